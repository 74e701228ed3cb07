/*
 * nbd.h: the NBD protocol, server side, as pure encode/decode over caller
 * buffers. No I/O, no allocation, no globals (like proto/wire.h). Everything
 * on the wire is big-endian. The reference is NetworkBlockDevice/nbd
 * doc/proto.md; quotes below are from it.
 *
 * Only the fixed newstyle handshake and the compact (28-byte) request header
 * are spoken. Oldstyle is not offered, TLS is not offered (the primary
 * serves a local Unix socket or loopback), metadata contexts and extended
 * headers are not negotiated: those options get NBD_REP_ERR_UNSUP.
 *
 * The handshake as the server sees it
 * -----------------------------------
 *
 *  1. Greeting. On accept, send nbd_encode_greeting() (18 bytes: NBDMAGIC,
 *     IHAVEOPT, handshake flags NBD_FLAG_FIXED_NEWSTYLE|NBD_FLAG_NO_ZEROES).
 *
 *  2. Client flags. Read 4 bytes, nbd_decode_client_flags() with the
 *     handshake flags sent. Any error: close ("the server MUST drop the TCP
 *     connection if the client sets an unknown flag, or a flag that does not
 *     match something advertised by the server"). Remember NO_ZEROES.
 *
 *  3. Options loop. Read 16 bytes, nbd_decode_opt_hdr() with a limit such as
 *     NBD_OPT_LEN_MAX. NBD_ESHORT: read more. NBD_EOPTMAGIC: close (no way
 *     to find the next option). NBD_EOPTLEN: close (the spec lets a server
 *     hard-disconnect on "a denial of service"; skipping gigabytes is one).
 *     Otherwise read exactly hdr.length payload bytes, then by hdr.option:
 *
 *     EXPORT_NAME  nbd_decode_opt_export_name(). Name OK and it is ours
 *                  (the volume name, or ""): send
 *                  nbd_encode_export_name_reply() and enter transmission.
 *                  Anything else: close; this option has no error reply
 *                  ("the server MUST terminate the session").
 *     GO, INFO     nbd_decode_opt_go(). NBD_EOPTFMT/NBD_ESTRING: reply
 *                  NBD_REP_ERR_INVALID. Unknown name: NBD_REP_ERR_UNKNOWN.
 *                  Otherwise send NBD_REP_INFO replies: INFO_EXPORT always
 *                  ("MUST send at least one NBD_REP_INFO, with an
 *                  NBD_INFO_EXPORT"), INFO_BLOCK_SIZE always (it is how
 *                  the limits nbd_check_request() enforces are advertised),
 *                  INFO_NAME / INFO_DESCRIPTION if asked (e.reqs), then
 *                  NBD_REP_ACK. After the ACK to GO, transmission starts;
 *                  no zero padding follows, whatever NO_ZEROES says.
 *                  A GO without a BLOCK_SIZE request is not refused with
 *                  NBD_REP_ERR_BLOCK_SIZE_REQD ("servers SHOULD NOT refuse
 *                  clients that do not request sizing information"): the
 *                  limits are enforced per request by nbd_check_request(),
 *                  which errors cleanly ("MUST cleanly error commands that
 *                  fall outside the constraints").
 *     ABORT        reply NBD_REP_ACK (data is ignored: "a server SHOULD
 *                  ignore any data sent"), then close.
 *     LIST         data present: NBD_REP_ERR_INVALID. Else one
 *                  nbd_encode_rep_server() with the volume name, NBD_REP_ACK.
 *     STRUCTURED_REPLY  data present: NBD_REP_ERR_INVALID. Else remember it
 *                  (lim.structured = 1) and reply NBD_REP_ACK. A repeat MAY
 *                  get NBD_REP_ERR_INVALID.
 *     STARTTLS     NBD_REP_ERR_POLICY (or ERR_INVALID with data): no TLS.
 *     anything else (LIST_META_CONTEXT, SET_META_CONTEXT,
 *                  EXTENDED_HEADERS, unknown codes): NBD_REP_ERR_UNSUP, and
 *                  keep going ("MUST NOT fail to parse the next message
 *                  received"); the payload was read past above.
 *
 *     Error replies may carry a message: nbd_encode_rep_err().
 *
 *  4. Transmission. Per request: read 28 bytes, nbd_decode_request().
 *     NBD_EREQMAGIC: close (the stream cannot be resynchronised). Then
 *     nbd_check_request(&req, &lim):
 *
 *       NBD_CMD_DISC: always 0; finish the requests in flight, close. There
 *                  is no reply.
 *       errno != 0: the request is refused. A WRITE still has req.length
 *                  payload bytes on the wire: read and discard
 *                  nbd_request_payload(&req) bytes, then reply.
 *       0:         read nbd_request_payload(&req) bytes (WRITE) and do it.
 *
 *     Replies: without structured replies, nbd_encode_simple_reply() (and for
 *     a successful READ, the data). With structured replies, a READ MUST be
 *     answered with chunks, errors included ("MUST NOT use a simple reply for
 *     NBD_CMD_READ (even for the case of an early NBD_EINVAL ...)"):
 *     nbd_encode_offset_data_hdr() + data, nbd_encode_offset_hole(),
 *     nbd_encode_error_chunk(), and the last chunk carries
 *     NBD_REPLY_FLAG_DONE (or a NBD_REPLY_TYPE_NONE chunk ends it). Other
 *     commands may use simple replies either way.
 *     The transmission flags to advertise are nbd_tflags(&lim): exactly the
 *     features nbd_check_request() accepts.
 */
#ifndef DUET_PROTO_NBD_H
#define DUET_PROTO_NBD_H

#include <stddef.h>
#include <stdint.h>

/* Magics. */
#define NBD_MAGIC		UINT64_C(0x4e42444d41474943)	/* "NBDMAGIC" */
#define NBD_IHAVEOPT		UINT64_C(0x49484156454f5054)	/* "IHAVEOPT" */
#define NBD_OPT_REPLY_MAGIC	UINT64_C(0x0003e889045565a9)
#define NBD_REQUEST_MAGIC	UINT32_C(0x25609513)
#define NBD_SIMPLE_REPLY_MAGIC	UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC UINT32_C(0x668e33ef)

/* Handshake flags (server, 16 bits). */
#define NBD_FLAG_FIXED_NEWSTYLE	0x0001u
#define NBD_FLAG_NO_ZEROES	0x0002u

/* Client flags (32 bits). */
#define NBD_FLAG_C_FIXED_NEWSTYLE 0x00000001u
#define NBD_FLAG_C_NO_ZEROES	0x00000002u

/* Options. */
#define NBD_OPT_EXPORT_NAME	1
#define NBD_OPT_ABORT		2
#define NBD_OPT_LIST		3
#define NBD_OPT_PEEK_EXPORT	4	/* withdrawn */
#define NBD_OPT_STARTTLS	5
#define NBD_OPT_INFO		6
#define NBD_OPT_GO		7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT 10
#define NBD_OPT_EXTENDED_HEADERS 11	/* extension; never negotiated here */

/* Option reply types; errors have bit 31 set. */
#define NBD_REP_ACK		1u
#define NBD_REP_SERVER		2u
#define NBD_REP_INFO		3u
#define NBD_REP_META_CONTEXT	4u
#define NBD_REP_FLAG_ERROR	0x80000000u
#define NBD_REP_ERR_UNSUP	(NBD_REP_FLAG_ERROR | 1u)
#define NBD_REP_ERR_POLICY	(NBD_REP_FLAG_ERROR | 2u)
#define NBD_REP_ERR_INVALID	(NBD_REP_FLAG_ERROR | 3u)
#define NBD_REP_ERR_PLATFORM	(NBD_REP_FLAG_ERROR | 4u)
#define NBD_REP_ERR_TLS_REQD	(NBD_REP_FLAG_ERROR | 5u)
#define NBD_REP_ERR_UNKNOWN	(NBD_REP_FLAG_ERROR | 6u)
#define NBD_REP_ERR_SHUTDOWN	(NBD_REP_FLAG_ERROR | 7u)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_FLAG_ERROR | 8u)
#define NBD_REP_ERR_TOO_BIG	(NBD_REP_FLAG_ERROR | 9u)

/* NBD_REP_INFO information types. */
#define NBD_INFO_EXPORT		0
#define NBD_INFO_NAME		1
#define NBD_INFO_DESCRIPTION	2
#define NBD_INFO_BLOCK_SIZE	3

/* Transmission flags (16 bits). */
#define NBD_FLAG_HAS_FLAGS	0x0001u
#define NBD_FLAG_READ_ONLY	0x0002u
#define NBD_FLAG_SEND_FLUSH	0x0004u
#define NBD_FLAG_SEND_FUA	0x0008u
#define NBD_FLAG_ROTATIONAL	0x0010u
#define NBD_FLAG_SEND_TRIM	0x0020u
#define NBD_FLAG_SEND_WRITE_ZEROES 0x0040u
#define NBD_FLAG_SEND_DF	0x0080u
#define NBD_FLAG_CAN_MULTI_CONN	0x0100u
#define NBD_FLAG_SEND_RESIZE	0x0200u
#define NBD_FLAG_SEND_CACHE	0x0400u
#define NBD_FLAG_SEND_FAST_ZERO	0x0800u
#define NBD_FLAG_BLOCK_STAT_PAYLOAD 0x1000u	/* extended headers only */

/* Commands. */
#define NBD_CMD_READ		0
#define NBD_CMD_WRITE		1
#define NBD_CMD_DISC		2
#define NBD_CMD_FLUSH		3
#define NBD_CMD_TRIM		4
#define NBD_CMD_CACHE		5
#define NBD_CMD_WRITE_ZEROES	6
#define NBD_CMD_BLOCK_STATUS	7
#define NBD_CMD_RESIZE		8	/* experimental extension */

/* Command flags (16 bits). */
#define NBD_CMD_FLAG_FUA	0x0001u
#define NBD_CMD_FLAG_NO_HOLE	0x0002u
#define NBD_CMD_FLAG_DF		0x0004u
#define NBD_CMD_FLAG_REQ_ONE	0x0008u
#define NBD_CMD_FLAG_FAST_ZERO	0x0010u
#define NBD_CMD_FLAG_PAYLOAD_LEN 0x0020u	/* extended headers only */

/* Error values for replies (positive; not the host's errno). */
#define NBD_EPERM		1
#define NBD_EIO			5
#define NBD_ENOMEM		12
#define NBD_EINVAL		22
#define NBD_ENOSPC		28
#define NBD_EOVERFLOW		75
#define NBD_ENOTSUP		95
#define NBD_ESHUTDOWN		108

/* Structured reply chunk types; error chunks have bit 15 set. */
#define NBD_REPLY_TYPE_NONE	0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR	0x8001u
#define NBD_REPLY_TYPE_ERROR_OFFSET 0x8002u

/* Structured reply flags. */
#define NBD_REPLY_FLAG_DONE	0x0001u

/* Sizes of fixed messages, in bytes. */
#define NBD_GREETING_SIZE	18
#define NBD_CLIENT_FLAGS_SIZE	4
#define NBD_OPT_HDR_SIZE	16
#define NBD_OPT_REPLY_HDR_SIZE	20
#define NBD_REP_INFO_EXPORT_SIZE (NBD_OPT_REPLY_HDR_SIZE + 12)
#define NBD_REP_INFO_BLOCK_SIZE_SIZE (NBD_OPT_REPLY_HDR_SIZE + 14)
#define NBD_EXPORT_NAME_REPLY_SIZE 134	/* 10 without the zeroes */
#define NBD_REQUEST_SIZE	28
#define NBD_SIMPLE_REPLY_SIZE	16
#define NBD_CHUNK_HDR_SIZE	20
#define NBD_OFFSET_DATA_HDR_SIZE (NBD_CHUNK_HDR_SIZE + 8)
#define NBD_OFFSET_HOLE_SIZE	(NBD_CHUNK_HDR_SIZE + 12)

/* "MUST be no longer than 4096 bytes": names and messages. */
#define NBD_STRING_MAX		4096
/* A limit for nbd_decode_opt_hdr: a maximal name plus room for requests. */
#define NBD_OPT_LEN_MAX		8192

/* Block size defaults when none are advertised. */
#define NBD_DEFAULT_MIN_BLOCK	1u
#define NBD_DEFAULT_PREF_BLOCK	4096u
#define NBD_DEFAULT_MAX_BLOCK	UINT32_C(0xffffffff)

/* Codec results: 0, or a negative reason. Each malformed input has its own. */
enum nbd_err {
	NBD_OK = 0,
	NBD_ESHORT = -1,	/* not enough bytes yet: read more, not an error */
	NBD_EOPTMAGIC = -2,	/* option header without IHAVEOPT */
	NBD_EOPTLEN = -3,	/* option length over the caller's limit */
	NBD_EOPTFMT = -4,	/* option payload lengths inconsistent */
	NBD_ESTRING = -5,	/* name or message over 4096 bytes, or a NUL */
	NBD_ECFLAGS = -6,	/* unknown or unadvertised client flag */
	NBD_EREQMAGIC = -7,	/* request without NBD_REQUEST_MAGIC */
	NBD_EBUFSIZE = -8,	/* encoder: output buffer too small */
	NBD_EARG = -9,		/* encoder: argument out of the spec's range */
	NBD_ELIMITS = -10,	/* block size limits break the spec's rules */
};

struct nbd_opt_hdr {
	uint32_t option;	/* NBD_OPT_*, or unknown */
	uint32_t length;	/* payload bytes that follow */
};

/*
 * A decoded GO/INFO or EXPORT_NAME option. name and info point into the
 * caller's buffer and live as long as it does; name is not NUL-terminated.
 */
struct nbd_opt_export {
	const uint8_t	*name;
	uint32_t	 name_len;
	uint16_t	 ninfo;		/* information requests */
	const uint8_t	*info;		/* ninfo big-endian u16; nbd_opt_info() */
	uint32_t	 reqs;		/* bit (1 << t) per requested type t < 32 */
};

struct nbd_request {
	uint16_t flags;		/* NBD_CMD_FLAG_* */
	uint16_t type;		/* NBD_CMD_* */
	uint64_t handle;	/* opaque, echoed in the reply ("cookie") */
	uint64_t offset;
	uint32_t length;
};

/*
 * What nbd_check_request holds a request to: the export and the block
 * sizes advertised in NBD_INFO_BLOCK_SIZE (or the defaults), and whether
 * NBD_OPT_STRUCTURED_REPLY was negotiated. min_block 0 is taken as 1 and
 * max_block 0 as "no limit" (0xffffffff).
 */
struct nbd_limits {
	uint64_t export_size;
	uint32_t min_block;
	uint32_t pref_block;
	uint32_t max_block;
	int	 structured;
};

/* Human-readable text for an nbd_err, and names for logs ("UNKNOWN"). */
const char *nbd_strerror(int err);
const char *nbd_cmd_name(unsigned type);
const char *nbd_opt_name(unsigned option);

/*
 * Checks limits against the spec's MUSTs for advertised block sizes:
 * min a power of 2 <= 65536; pref a power of 2 >= max(min, 512); max a
 * multiple of min or 0xffffffff, and >= min(pref, export_size). Returns 0
 * or NBD_ELIMITS.
 */
int nbd_limits_check(const struct nbd_limits *lim);

/* The transmission flags matching what nbd_check_request accepts. The
 * caller may add NBD_FLAG_ROTATIONAL or NBD_FLAG_CAN_MULTI_CONN. */
uint16_t nbd_tflags(const struct nbd_limits *lim);

/* ---- Handshake: server side. ---- */

/* Greeting into out[NBD_GREETING_SIZE]. */
void nbd_encode_greeting(uint8_t *out, uint16_t hflags);

/*
 * Client flags from buf[len], checked against the handshake flags the
 * server sent. Returns 0, NBD_ESHORT, or NBD_ECFLAGS (unknown bit, or
 * NO_ZEROES when the server did not offer it).
 */
int nbd_decode_client_flags(const uint8_t *buf, size_t len, uint16_t hflags,
    uint32_t *cflags);

/*
 * Option header from buf[len]. Returns 0, NBD_ESHORT, NBD_EOPTMAGIC, or
 * NBD_EOPTLEN (length > max_len). Unknown options decode fine: they are
 * answered with NBD_REP_ERR_UNSUP, not dropped.
 */
int nbd_decode_opt_hdr(const uint8_t *buf, size_t len, uint32_t max_len,
    struct nbd_opt_hdr *hdr);

/*
 * Option payloads: buf[len] is the whole payload (len == hdr.length), so
 * these never return NBD_ESHORT.
 *
 * GO and INFO: name length (u32), name, count (u16), count u16 info types.
 * The lengths must add up to len exactly, else NBD_EOPTFMT; a name over
 * NBD_STRING_MAX or containing NUL is NBD_ESTRING.
 */
int nbd_decode_opt_go(const uint8_t *buf, size_t len,
    struct nbd_opt_export *e);

/* EXPORT_NAME: the whole payload is the name. 0 or NBD_ESTRING. ninfo = 0. */
int nbd_decode_opt_export_name(const uint8_t *buf, size_t len,
    struct nbd_opt_export *e);

/* The i-th information request (i < e->ninfo). */
uint16_t nbd_opt_info(const struct nbd_opt_export *e, unsigned i);

/* Option reply header into out[NBD_OPT_REPLY_HDR_SIZE]; with length 0 it is
 * the whole reply (NBD_REP_ACK, bare errors). */
void nbd_encode_opt_reply_hdr(uint8_t *out, uint32_t option, uint32_t type,
    uint32_t length);

/*
 * Whole variable-length option replies (header and payload) into out[cap].
 * Return the bytes written, NBD_EBUFSIZE if cap is too small, or
 * NBD_ESTRING for a string over NBD_STRING_MAX.
 *
 * rep_server: NBD_REP_SERVER (name length, name) for option (NBD_OPT_LIST).
 * info_name, info_description: NBD_REP_INFO NAME / DESCRIPTION.
 * rep_err: an error reply type (bit 31 set, else NBD_EARG) with a message
 * (msg_len may be 0).
 */
long nbd_encode_rep_server(uint8_t *out, size_t cap, uint32_t option,
    const char *name, size_t name_len);
long nbd_encode_info_name(uint8_t *out, size_t cap, uint32_t option,
    const char *name, size_t name_len);
long nbd_encode_info_description(uint8_t *out, size_t cap, uint32_t option,
    const char *desc, size_t desc_len);
long nbd_encode_rep_err(uint8_t *out, size_t cap, uint32_t option,
    uint32_t type, const char *msg, size_t msg_len);

/* NBD_REP_INFO EXPORT into out[NBD_REP_INFO_EXPORT_SIZE]. */
void nbd_encode_info_export(uint8_t *out, uint32_t option, uint64_t size,
    uint16_t tflags);

/* NBD_REP_INFO BLOCK_SIZE into out[NBD_REP_INFO_BLOCK_SIZE_SIZE]. */
void nbd_encode_info_block_size(uint8_t *out, uint32_t option,
    uint32_t min_block, uint32_t pref_block, uint32_t max_block);

/* Reply to NBD_OPT_EXPORT_NAME into out[NBD_EXPORT_NAME_REPLY_SIZE]: size,
 * tflags, then 124 zero bytes unless no_zeroes. Returns 10 or 134. */
size_t nbd_encode_export_name_reply(uint8_t *out, uint64_t size,
    uint16_t tflags, int no_zeroes);

/* ---- Handshake: client side (tests, the fuzzer, a test client). ---- */

void nbd_encode_client_flags(uint8_t *out, uint32_t cflags);
void nbd_encode_opt_hdr(uint8_t *out, uint32_t option, uint32_t length);
/* GO/INFO payload; returns the bytes written, NBD_EBUFSIZE or NBD_ESTRING. */
long nbd_encode_opt_go(uint8_t *out, size_t cap, const char *name,
    size_t name_len, const uint16_t *info, uint16_t ninfo);

/* ---- Transmission. ---- */

/* Request header from buf[len]. 0, NBD_ESHORT or NBD_EREQMAGIC; the fields
 * are not judged here (nbd_check_request). */
int nbd_decode_request(const uint8_t *buf, size_t len,
    struct nbd_request *req);
void nbd_encode_request(uint8_t *out, const struct nbd_request *req);

/* Payload bytes that follow the header on the wire: length for a WRITE,
 * else 0. */
uint32_t nbd_request_payload(const struct nbd_request *req);

/*
 * Judges a decoded request. Returns the NBD error the server must reply
 * with (NBD_EINVAL, NBD_ENOSPC), or 0 to carry it out. See nbd.c for the
 * rules.
 */
int nbd_check_request(const struct nbd_request *req,
    const struct nbd_limits *lim);

/* Simple reply into out[NBD_SIMPLE_REPLY_SIZE]. */
void nbd_encode_simple_reply(uint8_t *out, uint32_t error, uint64_t handle);

/* Structured reply chunk header into out[NBD_CHUNK_HDR_SIZE]. */
void nbd_encode_chunk_hdr(uint8_t *out, uint16_t flags, uint16_t type,
    uint64_t handle, uint32_t length);

/*
 * OFFSET_DATA chunk header and offset into out[NBD_OFFSET_DATA_HDR_SIZE];
 * data_len bytes of data follow. 0, or NBD_EARG if data_len is 0 or over
 * UINT32_MAX - 8 ("length MUST be at least 9").
 */
int nbd_encode_offset_data_hdr(uint8_t *out, uint16_t flags, uint64_t handle,
    uint64_t offset, uint32_t data_len);

/* OFFSET_HOLE chunk into out[NBD_OFFSET_HOLE_SIZE]. 0, or NBD_EARG if
 * hole_len is 0 ("MUST be nonzero"). */
int nbd_encode_offset_hole(uint8_t *out, uint16_t flags, uint64_t handle,
    uint64_t offset, uint32_t hole_len);

/*
 * Whole ERROR chunk (header, error, message length, message) into out[cap].
 * Returns the bytes written (NBD_CHUNK_HDR_SIZE + 6 + msg_len),
 * NBD_EBUFSIZE, NBD_ESTRING (msg over NBD_STRING_MAX), or NBD_EARG
 * (error 0: "MUST be nonzero"). The _offset form is ERROR_OFFSET, with the
 * offset after the message.
 */
long nbd_encode_error_chunk(uint8_t *out, size_t cap, uint16_t flags,
    uint64_t handle, uint32_t error, const char *msg, size_t msg_len);
long nbd_encode_error_offset_chunk(uint8_t *out, size_t cap, uint16_t flags,
    uint64_t handle, uint32_t error, const char *msg, size_t msg_len,
    uint64_t offset);

#endif
