/*
 * nbd.c: the NBD codec, server side (see nbd.h for the handshake walk-through
 * and doc/proto.md of NetworkBlockDevice/nbd for the protocol). Pure
 * functions over caller buffers: integers are moved big-endian with byte
 * shifts, nothing is allocated, the only globals are const tables.
 *
 * Decoders check lengths before they look at anything a length describes, so
 * no read can leave the caller's buffer, and they write their output only on
 * success. Encoders of variable-length messages check the caller's capacity
 * first and write nothing when it is short.
 *
 * Where the spec leaves a choice, this is the one taken (quotes from it):
 *
 *  - Client flags: only FIXED_NEWSTYLE and NO_ZEROES, and NO_ZEROES only when
 *    the server offered it; anything else is NBD_ECFLAGS ("the server MUST
 *    drop the TCP connection if the client sets an unknown flag, or a flag
 *    that does not match something advertised by the server"). A client
 *    without C_FIXED_NEWSTYLE is accepted ("Servers MAY choose to honour
 *    fixed newstyle from clients that didn't set this bit").
 *  - Option length: the caller's limit (NBD_OPT_LEN_MAX = 8192 suits: a
 *    4096-byte name plus its GO framing and info list). Over it, NBD_EOPTLEN,
 *    and the caller closes rather than skip the data ("if a server believes a
 *    client's behaviour constitutes a denial of service, it MAY initiate a
 *    hard disconnect").
 *  - GO/INFO payload: "length of name ... MUST be no larger than the option
 *    data length - 6", and the info list must fill the rest exactly; any
 *    slack or shortfall is NBD_EOPTFMT (the reply is NBD_REP_ERR_INVALID).
 *    Duplicate info requests ("MUST NOT include any information request in
 *    the list more than once") are tolerated: they change nothing for a
 *    server that answers each type once. Unknown types are kept in the list
 *    and ignored by reqs ("The server MUST ignore any information requests
 *    it does not understand").
 *  - Names (GO/INFO and EXPORT_NAME) longer than 4096 bytes or holding a NUL
 *    are NBD_ESTRING ("MUST NOT contain NUL characters ... MUST be no longer
 *    than 4096 bytes"). UTF-8 is not validated: the name is only compared
 *    byte for byte with the volume name.
 *  - Encoders refuse strings over 4096 bytes or with a NUL (NBD_ESTRING), an
 *    error chunk with error 0 ("MUST be nonzero"), an OFFSET_DATA chunk of no
 *    data or of more than 2^32 - 9 bytes ("length MUST be at least 9" and
 *    must fit the 32-bit length), a hole of 0 bytes, a rep_err type without
 *    bit 31 (NBD_EARG).
 *
 * nbd_check_request, in this order (the first failing rule names the error):
 *
 *  1. NBD_CMD_DISC: always 0. There is no reply to a DISC, so there is no one
 *     to tell that its offset/length were not zero; the server just finishes
 *     and closes.
 *  2. Unknown command, and the known ones this server does not offer:
 *     BLOCK_STATUS (no metadata context is ever selected: "Servers SHOULD
 *     reply with NBD_EINVAL to clients sending NBD_CMD_BLOCK_STATUS without
 *     selecting at least one metadata context") and RESIZE (not advertised):
 *     NBD_EINVAL ("The server SHOULD return NBD_EINVAL if it receives an
 *     unknown command").
 *  3. Flags: NBD_EINVAL for a flag "not explicitly documented as applicable
 *     to the given request". FUA is accepted on every command, since
 *     SEND_FUA is advertised ("valid for all commands, provided
 *     NBD_FLAG_SEND_FUA has been negotiated, in which case the server MUST
 *     accept all commands with this bit set"). NO_HOLE and FAST_ZERO only on
 *     WRITE_ZEROES; DF only on READ and only with structured replies (SEND_DF
 *     "MUST leave this flag clear if structured replies have not been
 *     negotiated"); REQ_ONE (BLOCK_STATUS) and PAYLOAD_LEN (extended headers,
 *     not negotiated) never.
 *  4. FLUSH: offset and length must be 0 ("*length* and *offset* are
 *     reserved, and MUST be set to all-zero"), else NBD_EINVAL. Nothing
 *     further applies to FLUSH.
 *  5. Length 0 on READ, WRITE, TRIM, CACHE, WRITE_ZEROES: NBD_EINVAL. The
 *     spec leaves it open ("the behavior of a server on such a request is
 *     unspecified although the server SHOULD NOT disconnect"); an error reply
 *     does not disconnect, and the replication stream has no zero spans.
 *  6. Alignment: offset or length not a multiple of min_block: NBD_EINVAL
 *     ("The server SHOULD report an NBD_EINVAL error if the client's request
 *     is not aligned to advertised minimum block size boundaries").
 *  7. Maximum block size: READ and WRITE longer than max_block: NBD_EINVAL
 *     ("or is larger than the advertised maximum block size"), not
 *     NBD_EOVERFLOW ("The server SHOULD NOT return NBD_EOVERFLOW except as
 *     documented in response to NBD_CMD_READ when NBD_CMD_FLAG_DF is
 *     supported"). max_block is what the server agrees to buffer, so the
 *     commands whose length is not a payload (TRIM, WRITE_ZEROES, CACHE) are
 *     bounded only by the export: the spec asks servers merely to fail those
 *     ("a server SHOULD merely fail the command with an NBD_EINVAL"), and
 *     accepting is the kinder reading for clients that were never told
 *     max_block (NBD_OPT_EXPORT_NAME clients).
 *  8. Range: offset + length past the export (computed without overflow, so
 *     offset near UINT64_MAX is simply out of range): NBD_ENOSPC for WRITE
 *     and WRITE_ZEROES ("The server SHOULD return NBD_ENOSPC if it receives a
 *     write request including one or more sectors beyond the size of the
 *     device", and the same for write zeroes), NBD_EINVAL for READ, TRIM,
 *     CACHE ("SHOULD return NBD_EINVAL if it receives a read or trim request
 *     including one or more sectors beyond the size of the device").
 *  9. READ with DF longer than one OFFSET_DATA chunk can carry (2^32 - 9
 *     bytes; "a request for more than 2^32 - 8 bytes ... MUST be split into
 *     at least two chunks"): NBD_EOVERFLOW ("A server MAY reject a client's
 *     request with the error NBD_EOVERFLOW if the length is too large to send
 *     without fragmentation"). Any shorter DF read is served in one chunk.
 *
 * A refused WRITE still has its payload on the wire, and the next header
 * only starts after it. The payload is always read past, whatever its
 * length: the spec allows a hard disconnect only for a payload "large enough
 * to be deemed a denial of service attack", and skipping costs the server
 * bandwidth, not memory. A close would also race the reply: a client still
 * sending the payload sees a reset, not the error.
 */
#include <string.h>

#include "proto/nbd.h"

static inline void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static inline uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t
get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	    ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t
get64(const uint8_t *p)
{
	return ((uint64_t)get32(p) << 32) | (uint64_t)get32(p + 4);
}

static int
nbd_string_ok(const void *s, size_t len)
{
	return len <= NBD_STRING_MAX && (len == 0 || memchr(s, 0, len) == NULL);
}

static int
is_pow2(uint32_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

const char *
nbd_strerror(int err)
{
	switch (err) {
	case NBD_OK:
		return "success";
	case NBD_ESHORT:
		return "short message";
	case NBD_EOPTMAGIC:
		return "bad option magic";
	case NBD_EOPTLEN:
		return "option length over the limit";
	case NBD_EOPTFMT:
		return "malformed option payload";
	case NBD_ESTRING:
		return "string over 4096 bytes or containing NUL";
	case NBD_ECFLAGS:
		return "unknown or unadvertised client flag";
	case NBD_EREQMAGIC:
		return "bad request magic";
	case NBD_EBUFSIZE:
		return "output buffer too small";
	case NBD_EARG:
		return "argument out of range";
	case NBD_ELIMITS:
		return "block size limits break the protocol's rules";
	default:
		return "unknown nbd error";
	}
}

static const char *const nbd_cmd_names[] = {
	[NBD_CMD_READ] = "READ",
	[NBD_CMD_WRITE] = "WRITE",
	[NBD_CMD_DISC] = "DISC",
	[NBD_CMD_FLUSH] = "FLUSH",
	[NBD_CMD_TRIM] = "TRIM",
	[NBD_CMD_CACHE] = "CACHE",
	[NBD_CMD_WRITE_ZEROES] = "WRITE_ZEROES",
	[NBD_CMD_BLOCK_STATUS] = "BLOCK_STATUS",
	[NBD_CMD_RESIZE] = "RESIZE",
};

static const char *const nbd_opt_names[] = {
	[NBD_OPT_EXPORT_NAME] = "EXPORT_NAME",
	[NBD_OPT_ABORT] = "ABORT",
	[NBD_OPT_LIST] = "LIST",
	[NBD_OPT_PEEK_EXPORT] = "PEEK_EXPORT",
	[NBD_OPT_STARTTLS] = "STARTTLS",
	[NBD_OPT_INFO] = "INFO",
	[NBD_OPT_GO] = "GO",
	[NBD_OPT_STRUCTURED_REPLY] = "STRUCTURED_REPLY",
	[NBD_OPT_LIST_META_CONTEXT] = "LIST_META_CONTEXT",
	[NBD_OPT_SET_META_CONTEXT] = "SET_META_CONTEXT",
	[NBD_OPT_EXTENDED_HEADERS] = "EXTENDED_HEADERS",
};

const char *
nbd_cmd_name(unsigned type)
{
	if (type >= sizeof(nbd_cmd_names) / sizeof(nbd_cmd_names[0]))
		return "UNKNOWN";
	return nbd_cmd_names[type];
}

const char *
nbd_opt_name(unsigned option)
{
	if (option >= sizeof(nbd_opt_names) / sizeof(nbd_opt_names[0]) ||
	    nbd_opt_names[option] == NULL)
		return "UNKNOWN";
	return nbd_opt_names[option];
}

int
nbd_limits_check(const struct nbd_limits *lim)
{
	uint32_t min = lim->min_block, pref = lim->pref_block;
	uint32_t max = lim->max_block;
	uint64_t floor;

	if (!is_pow2(min) || min > 65536)
		return NBD_ELIMITS;
	if (!is_pow2(pref) || pref < 512 || pref < min)
		return NBD_ELIMITS;
	if (max == 0 || (max != NBD_DEFAULT_MAX_BLOCK && max % min != 0))
		return NBD_ELIMITS;
	floor = pref < lim->export_size ? pref : lim->export_size;
	if (max < floor)
		return NBD_ELIMITS;
	return NBD_OK;
}

uint16_t
nbd_tflags(const struct nbd_limits *lim)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
	    NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
	    NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO |
	    NBD_FLAG_SEND_CACHE;

	if (lim->structured)
		f |= NBD_FLAG_SEND_DF;
	return f;
}

/* ---- Handshake. ---- */

void
nbd_encode_greeting(uint8_t *out, uint16_t hflags)
{
	put64(out, NBD_MAGIC);
	put64(out + 8, NBD_IHAVEOPT);
	put16(out + 16, hflags);
}

void
nbd_encode_client_flags(uint8_t *out, uint32_t cflags)
{
	put32(out, cflags);
}

int
nbd_decode_client_flags(const uint8_t *buf, size_t len, uint16_t hflags,
    uint32_t *cflags)
{
	uint32_t allowed = NBD_FLAG_C_FIXED_NEWSTYLE, f;

	if (len < NBD_CLIENT_FLAGS_SIZE)
		return NBD_ESHORT;
	if (hflags & NBD_FLAG_NO_ZEROES)
		allowed |= NBD_FLAG_C_NO_ZEROES;
	f = get32(buf);
	if ((f & ~allowed) != 0)
		return NBD_ECFLAGS;
	*cflags = f;
	return NBD_OK;
}

void
nbd_encode_opt_hdr(uint8_t *out, uint32_t option, uint32_t length)
{
	put64(out, NBD_IHAVEOPT);
	put32(out + 8, option);
	put32(out + 12, length);
}

int
nbd_decode_opt_hdr(const uint8_t *buf, size_t len, uint32_t max_len,
    struct nbd_opt_hdr *hdr)
{
	uint32_t olen;

	if (len < NBD_OPT_HDR_SIZE)
		return NBD_ESHORT;
	if (get64(buf) != NBD_IHAVEOPT)
		return NBD_EOPTMAGIC;
	olen = get32(buf + 12);
	if (olen > max_len)
		return NBD_EOPTLEN;
	hdr->option = get32(buf + 8);
	hdr->length = olen;
	return NBD_OK;
}

static uint32_t
nbd_info_reqs(const uint8_t *info, uint16_t ninfo)
{
	uint32_t reqs = 0;
	uint16_t t;
	unsigned i;

	for (i = 0; i < ninfo; i++) {
		t = get16(info + 2 * i);
		if (t < 32)
			reqs |= UINT32_C(1) << t;
	}
	return reqs;
}

int
nbd_decode_opt_go(const uint8_t *buf, size_t len, struct nbd_opt_export *e)
{
	uint32_t name_len;
	uint16_t ninfo;
	size_t rest;

	/* name length (4), name, count (2), count * 2. */
	if (len < 6)
		return NBD_EOPTFMT;
	name_len = get32(buf);
	if (name_len > len - 6)
		return NBD_EOPTFMT;
	rest = len - 6 - name_len;
	ninfo = get16(buf + 4 + name_len);
	if (rest != 2 * (size_t)ninfo)
		return NBD_EOPTFMT;
	if (!nbd_string_ok(buf + 4, name_len))
		return NBD_ESTRING;

	e->name = buf + 4;
	e->name_len = name_len;
	e->ninfo = ninfo;
	e->info = buf + 6 + name_len;
	e->reqs = nbd_info_reqs(e->info, ninfo);
	return NBD_OK;
}

int
nbd_decode_opt_export_name(const uint8_t *buf, size_t len,
    struct nbd_opt_export *e)
{
	if (!nbd_string_ok(buf, len))
		return NBD_ESTRING;
	e->name = buf;
	e->name_len = (uint32_t)len;
	e->ninfo = 0;
	e->info = buf + len;
	e->reqs = 0;
	return NBD_OK;
}

uint16_t
nbd_opt_info(const struct nbd_opt_export *e, unsigned i)
{
	return get16(e->info + 2 * (size_t)i);
}

long
nbd_encode_opt_go(uint8_t *out, size_t cap, const char *name,
    size_t name_len, const uint16_t *info, uint16_t ninfo)
{
	size_t need = 6 + name_len + 2 * (size_t)ninfo;
	unsigned i;

	if (!nbd_string_ok(name, name_len))
		return NBD_ESTRING;
	if (cap < need)
		return NBD_EBUFSIZE;
	put32(out, (uint32_t)name_len);
	if (name_len > 0)
		memcpy(out + 4, name, name_len);
	put16(out + 4 + name_len, ninfo);
	for (i = 0; i < ninfo; i++)
		put16(out + 6 + name_len + 2 * i, info[i]);
	return (long)need;
}

void
nbd_encode_opt_reply_hdr(uint8_t *out, uint32_t option, uint32_t type,
    uint32_t length)
{
	put64(out, NBD_OPT_REPLY_MAGIC);
	put32(out + 8, option);
	put32(out + 12, type);
	put32(out + 16, length);
}

/*
 * Option reply of `type` whose payload is a prefix of plen bytes (written
 * by the caller at out + NBD_OPT_REPLY_HDR_SIZE) and then the string s.
 * Checks s and cap; writes the header and the string.
 */
static long
nbd_encode_rep_string(uint8_t *out, size_t cap, uint32_t option,
    uint32_t type, size_t plen, const char *s, size_t slen)
{
	size_t need = NBD_OPT_REPLY_HDR_SIZE + plen + slen;

	if (!nbd_string_ok(s, slen))
		return NBD_ESTRING;
	if (cap < need)
		return NBD_EBUFSIZE;
	nbd_encode_opt_reply_hdr(out, option, type, (uint32_t)(plen + slen));
	if (slen > 0)
		memcpy(out + NBD_OPT_REPLY_HDR_SIZE + plen, s, slen);
	return (long)need;
}

long
nbd_encode_rep_server(uint8_t *out, size_t cap, uint32_t option,
    const char *name, size_t name_len)
{
	long n;

	n = nbd_encode_rep_string(out, cap, option, NBD_REP_SERVER, 4, name,
	    name_len);
	if (n >= 0)
		put32(out + NBD_OPT_REPLY_HDR_SIZE, (uint32_t)name_len);
	return n;
}

static long
nbd_encode_info_string(uint8_t *out, size_t cap, uint32_t option,
    uint16_t info, const char *s, size_t slen)
{
	long n;

	n = nbd_encode_rep_string(out, cap, option, NBD_REP_INFO, 2, s, slen);
	if (n >= 0)
		put16(out + NBD_OPT_REPLY_HDR_SIZE, info);
	return n;
}

long
nbd_encode_info_name(uint8_t *out, size_t cap, uint32_t option,
    const char *name, size_t name_len)
{
	return nbd_encode_info_string(out, cap, option, NBD_INFO_NAME, name,
	    name_len);
}

long
nbd_encode_info_description(uint8_t *out, size_t cap, uint32_t option,
    const char *desc, size_t desc_len)
{
	return nbd_encode_info_string(out, cap, option, NBD_INFO_DESCRIPTION,
	    desc, desc_len);
}

long
nbd_encode_rep_err(uint8_t *out, size_t cap, uint32_t option, uint32_t type,
    const char *msg, size_t msg_len)
{
	if ((type & NBD_REP_FLAG_ERROR) == 0)
		return NBD_EARG;
	return nbd_encode_rep_string(out, cap, option, type, 0, msg, msg_len);
}

void
nbd_encode_info_export(uint8_t *out, uint32_t option, uint64_t size,
    uint16_t tflags)
{
	uint8_t *p = out + NBD_OPT_REPLY_HDR_SIZE;

	nbd_encode_opt_reply_hdr(out, option, NBD_REP_INFO, 12);
	put16(p, NBD_INFO_EXPORT);
	put64(p + 2, size);
	put16(p + 10, tflags);
}

void
nbd_encode_info_block_size(uint8_t *out, uint32_t option, uint32_t min_block,
    uint32_t pref_block, uint32_t max_block)
{
	uint8_t *p = out + NBD_OPT_REPLY_HDR_SIZE;

	nbd_encode_opt_reply_hdr(out, option, NBD_REP_INFO, 14);
	put16(p, NBD_INFO_BLOCK_SIZE);
	put32(p + 2, min_block);
	put32(p + 6, pref_block);
	put32(p + 10, max_block);
}

size_t
nbd_encode_export_name_reply(uint8_t *out, uint64_t size, uint16_t tflags,
    int no_zeroes)
{
	put64(out, size);
	put16(out + 8, tflags);
	if (no_zeroes)
		return 10;
	memset(out + 10, 0, NBD_EXPORT_NAME_REPLY_SIZE - 10);
	return NBD_EXPORT_NAME_REPLY_SIZE;
}

/* ---- Transmission. ---- */

int
nbd_decode_request(const uint8_t *buf, size_t len, struct nbd_request *req)
{
	if (len < NBD_REQUEST_SIZE)
		return NBD_ESHORT;
	if (get32(buf) != NBD_REQUEST_MAGIC)
		return NBD_EREQMAGIC;
	req->flags = get16(buf + 4);
	req->type = get16(buf + 6);
	req->handle = get64(buf + 8);
	req->offset = get64(buf + 16);
	req->length = get32(buf + 24);
	return NBD_OK;
}

void
nbd_encode_request(uint8_t *out, const struct nbd_request *req)
{
	put32(out, NBD_REQUEST_MAGIC);
	put16(out + 4, req->flags);
	put16(out + 6, req->type);
	put64(out + 8, req->handle);
	put64(out + 16, req->offset);
	put32(out + 24, req->length);
}

uint32_t
nbd_request_payload(const struct nbd_request *req)
{
	return req->type == NBD_CMD_WRITE ? req->length : 0;
}

/* Flags each served command accepts; FUA on all (SEND_FUA is advertised). */
static uint16_t
nbd_cmd_flags(unsigned type, const struct nbd_limits *lim)
{
	switch (type) {
	case NBD_CMD_READ:
		return NBD_CMD_FLAG_FUA |
		    (lim->structured ? NBD_CMD_FLAG_DF : 0);
	case NBD_CMD_WRITE_ZEROES:
		return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
		    NBD_CMD_FLAG_FAST_ZERO;
	default:
		return NBD_CMD_FLAG_FUA;
	}
}

/* The rules 2..9 of the comment at the top; DISC handled by the caller. */
static int
nbd_judge(const struct nbd_request *req, const struct nbd_limits *lim)
{
	uint64_t size = lim->export_size;
	uint32_t min = lim->min_block != 0 ? lim->min_block : 1;
	uint32_t max = lim->max_block != 0 ? lim->max_block :
	    NBD_DEFAULT_MAX_BLOCK;
	int write = req->type == NBD_CMD_WRITE ||
	    req->type == NBD_CMD_WRITE_ZEROES;

	switch (req->type) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
	case NBD_CMD_FLUSH:
	case NBD_CMD_TRIM:
	case NBD_CMD_CACHE:
	case NBD_CMD_WRITE_ZEROES:
		break;
	default:
		return NBD_EINVAL;
	}
	if ((req->flags & ~nbd_cmd_flags(req->type, lim)) != 0)
		return NBD_EINVAL;
	if (req->type == NBD_CMD_FLUSH)
		return req->offset == 0 && req->length == 0 ? 0 : NBD_EINVAL;
	if (req->length == 0)
		return NBD_EINVAL;
	if (req->offset % min != 0 || req->length % min != 0)
		return NBD_EINVAL;
	if ((req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE) &&
	    req->length > max)
		return NBD_EINVAL;
	if (req->offset > size || req->length > size - req->offset)
		return write ? NBD_ENOSPC : NBD_EINVAL;
	if ((req->flags & NBD_CMD_FLAG_DF) &&
	    req->length > UINT32_MAX - 8)
		return NBD_EOVERFLOW;
	return 0;
}

int
nbd_check_request(const struct nbd_request *req,
    const struct nbd_limits *lim)
{
	if (req->type == NBD_CMD_DISC)
		return 0;
	return nbd_judge(req, lim);
}

void
nbd_encode_simple_reply(uint8_t *out, uint32_t error, uint64_t handle)
{
	put32(out, NBD_SIMPLE_REPLY_MAGIC);
	put32(out + 4, error);
	put64(out + 8, handle);
}

void
nbd_encode_chunk_hdr(uint8_t *out, uint16_t flags, uint16_t type,
    uint64_t handle, uint32_t length)
{
	put32(out, NBD_STRUCTURED_REPLY_MAGIC);
	put16(out + 4, flags);
	put16(out + 6, type);
	put64(out + 8, handle);
	put32(out + 16, length);
}

int
nbd_encode_offset_data_hdr(uint8_t *out, uint16_t flags, uint64_t handle,
    uint64_t offset, uint32_t data_len)
{
	if (data_len == 0 || data_len > UINT32_MAX - 8)
		return NBD_EARG;
	nbd_encode_chunk_hdr(out, flags, NBD_REPLY_TYPE_OFFSET_DATA, handle,
	    data_len + 8);
	put64(out + NBD_CHUNK_HDR_SIZE, offset);
	return NBD_OK;
}

int
nbd_encode_offset_hole(uint8_t *out, uint16_t flags, uint64_t handle,
    uint64_t offset, uint32_t hole_len)
{
	if (hole_len == 0)
		return NBD_EARG;
	nbd_encode_chunk_hdr(out, flags, NBD_REPLY_TYPE_OFFSET_HOLE, handle, 12);
	put64(out + NBD_CHUNK_HDR_SIZE, offset);
	put32(out + NBD_CHUNK_HDR_SIZE + 8, hole_len);
	return NBD_OK;
}

/* ERROR / ERROR_OFFSET: error, message length, message, then tail bytes
 * (the offset) written by the caller. */
static long
nbd_encode_err_chunk(uint8_t *out, size_t cap, uint16_t flags, uint16_t type,
    uint64_t handle, uint32_t error, const char *msg, size_t msg_len,
    size_t tail)
{
	size_t plen = 6 + msg_len + tail;

	if (error == 0)
		return NBD_EARG;
	if (!nbd_string_ok(msg, msg_len))
		return NBD_ESTRING;
	if (cap < NBD_CHUNK_HDR_SIZE + plen)
		return NBD_EBUFSIZE;
	nbd_encode_chunk_hdr(out, flags, type, handle, (uint32_t)plen);
	out += NBD_CHUNK_HDR_SIZE;
	put32(out, error);
	put16(out + 4, (uint16_t)msg_len);
	if (msg_len > 0)
		memcpy(out + 6, msg, msg_len);
	return (long)(NBD_CHUNK_HDR_SIZE + plen);
}

long
nbd_encode_error_chunk(uint8_t *out, size_t cap, uint16_t flags,
    uint64_t handle, uint32_t error, const char *msg, size_t msg_len)
{
	return nbd_encode_err_chunk(out, cap, flags, NBD_REPLY_TYPE_ERROR,
	    handle, error, msg, msg_len, 0);
}

long
nbd_encode_error_offset_chunk(uint8_t *out, size_t cap, uint16_t flags,
    uint64_t handle, uint32_t error, const char *msg, size_t msg_len,
    uint64_t offset)
{
	long n;

	n = nbd_encode_err_chunk(out, cap, flags, NBD_REPLY_TYPE_ERROR_OFFSET,
	    handle, error, msg, msg_len, 8);
	if (n >= 0)
		put64(out + NBD_CHUNK_HDR_SIZE + 6 + msg_len, offset);
	return n;
}
