/*
 * wire.c: the duet frame codec (see wire.h). Pure functions over caller
 * buffers: every integer is moved with byte shifts so the code is the same on
 * any host, nothing is allocated, and the only globals are const tables.
 *
 * wire_decode_hdr is the one gate every network byte passes before anything
 * acts on it, so it checks everything it can know from the header alone, in a
 * fixed order (the first failing check names the reason):
 *
 *   ESHORT, EMAGIC, EVERSION, ETYPE,
 *   EPAYLOAD  payload on a payload-less type,
 *   EHELLO    HELLO/HELLO_ACK plen != WIRE_HELLO_SIZE,
 *   ETOOBIG   plen > max_payload,
 *   ELENGTH   zero span, plen inconsistent with length,
 *   ERANGE    offset + length overflows or passes the volume,
 *   EALIGN    offset or length not a multiple of align,
 *   EFIELD    a field the type does not use is not zero, unknown flag bits,
 *             GOODBYE reason over WIRE_REASON_MAX, unknown ACK kind.
 *
 * Decisions the header leaves open, taken here:
 *  - HELLO/HELLO_ACK are bounded by their fixed size, not by max_payload
 *    (nothing is negotiated before the hello).
 *  - Every span type (WRITE, WRITE_ZEROES, TRIM, READ_REQ, READ_DATA,
 *    RESYNC_DATA, CSUM_REQ, CSUM_REPLY) needs length > 0.
 *  - READ_REQ length must be <= max_payload (ETOOBIG): its READ_DATA reply
 *    carries plen == length and could never be sent otherwise.
 *  - CSUM_REPLY: plen a nonzero multiple of WIRE_DIGEST_LEN; the digest
 *    granularity is the callers' business.
 *  - CR_XFER: plen a nonzero multiple of 4 and length > 0 (ELENGTH); offset is
 *    an extent index, so only offset + length overflow is checked (ERANGE),
 *    not the volume size or alignment.
 *  - Types without a span (HELLO, HELLO_ACK, FLUSH, ACK, PING, GOODBYE) must
 *    carry offset == length == 0 (EFIELD). seq and frontier are never checked.
 *  - Flags: only the bits wire.h assigns to a type are allowed (FUA on WRITE;
 *    FUA|NO_HOLE on WRITE_ZEROES; COPY on both; PONG|IN_SYNC on PING;
 *    LAST on CR_XFER);
 *    others 0.
 *    ACK flags must carry kind RECEIVED or APPLIED; the status is free.
 *  - wire_encode_hdr writes hdr->version, or WIRE_VERSION when it is 0, so a
 *    zero-initialised header encodes as the current version.
 *  - lim->align == 0 is taken as 1.
 *  - Hello layout (all little-endian), 384 bytes:
 *      0 proto_version, 4 capabilities, 8 uuid[16], 24 volume_size,
 *      32 extent_size, 36 max_payload, 40 gen_current, 48 gen_history[4],
 *      80 status, 84 hflags, 88..127 reserved (sent as zero, ignored on receipt),
 *      128..383 reason, NUL-padded.
 *    Decoding rejects (EHELLO) a wrong length, a negative status, a reason
 *    without a NUL in its 256 bytes, or non-NUL bytes after the first NUL;
 *    encoding sends at most 255 reason bytes.
 *  - Runs are canonical, so a bitmap has exactly one encoding: no zero run
 *    except a leading clean run followed by a dirty one, and a run longer than
 *    UINT32_MAX is sent as UINT32_MAX, 0, rest (the only place a zero run may
 *    follow another run). An empty bitmap encodes as zero bytes. Decoding
 *    validates all the runs before it writes a bit, so a rejected payload
 *    leaves bits untouched.
 */
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "proto/wire.h"

#define HELLO_OFF_PROTO		0
#define HELLO_OFF_CAPS		4
#define HELLO_OFF_UUID		8
#define HELLO_OFF_VOLSIZE	24
#define HELLO_OFF_EXTSIZE	32
#define HELLO_OFF_MAXPAY	36
#define HELLO_OFF_GENCUR	40
#define HELLO_OFF_GENHIST	48
#define HELLO_OFF_STATUS	80
#define HELLO_OFF_HFLAGS	84
#define HELLO_OFF_REASON	128

_Static_assert(HELLO_OFF_GENHIST + 8 * WIRE_GEN_HISTORY <= HELLO_OFF_STATUS,
    "hello generation history overlaps status");
_Static_assert(HELLO_OFF_REASON + WIRE_REASON_MAX == WIRE_HELLO_SIZE,
    "hello reason does not end the hello");

/* What each type allows; indexed by enum wire_type. */
#define T_SPAN		0x01	/* offset/length checked against the volume */
#define T_NOPAYLOAD	0x02	/* plen must be 0 */
#define T_PLEN_EQ_LEN	0x04	/* plen == length */
#define T_NOSPAN	0x08	/* offset == length == 0 */

static const struct wire_typeinfo {
	const char	*ti_name;
	unsigned	 ti_rules;
	uint32_t	 ti_flags;	/* allowed flag bits */
} wire_types[WIRE_TYPE_MAX + 1] = {
	[WIRE_HELLO] =		{ "HELLO", T_NOSPAN, 0 },
	[WIRE_HELLO_ACK] =	{ "HELLO_ACK", T_NOSPAN, 0 },
	[WIRE_WRITE] =		{ "WRITE", T_SPAN | T_PLEN_EQ_LEN,
				    WIRE_F_FUA | WIRE_F_COPY },
	[WIRE_WRITE_ZEROES] =	{ "WRITE_ZEROES", T_SPAN | T_NOPAYLOAD,
				    WIRE_F_FUA | WIRE_F_NO_HOLE | WIRE_F_COPY },
	[WIRE_TRIM] =		{ "TRIM", T_SPAN | T_NOPAYLOAD, 0 },
	[WIRE_FLUSH] =		{ "FLUSH", T_NOSPAN | T_NOPAYLOAD, 0 },
	[WIRE_ACK] =		{ "ACK", T_NOSPAN | T_NOPAYLOAD, 0 },
	[WIRE_READ_REQ] =	{ "READ_REQ", T_SPAN | T_NOPAYLOAD, 0 },
	[WIRE_READ_DATA] =	{ "READ_DATA", T_SPAN | T_PLEN_EQ_LEN, 0 },
	[WIRE_CR_XFER] =	{ "CR_XFER", 0, WIRE_F_LAST },
	[WIRE_RESYNC_DATA] =	{ "RESYNC_DATA", T_SPAN | T_PLEN_EQ_LEN, 0 },
	[WIRE_CSUM_REQ] =	{ "CSUM_REQ", T_SPAN | T_NOPAYLOAD, 0 },
	[WIRE_CSUM_REPLY] =	{ "CSUM_REPLY", T_SPAN, 0 },
	[WIRE_PING] =		{ "PING", T_NOSPAN | T_NOPAYLOAD,
				    WIRE_F_PONG | WIRE_F_IN_SYNC },
	[WIRE_GOODBYE] =	{ "GOODBYE", T_NOSPAN, 0 },
};

static inline void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void
put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) |
	    ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

const char *
wire_strerror(int err)
{
	switch (err) {
	case WIRE_OK:
		return "success";
	case WIRE_ESHORT:
		return "short header";
	case WIRE_EMAGIC:
		return "bad magic";
	case WIRE_EVERSION:
		return "protocol version mismatch";
	case WIRE_ETYPE:
		return "unknown frame type";
	case WIRE_ETOOBIG:
		return "payload over the negotiated maximum";
	case WIRE_ERANGE:
		return "offset + length beyond the volume";
	case WIRE_EALIGN:
		return "misaligned offset or length";
	case WIRE_EPAYLOAD:
		return "payload on a type that has none";
	case WIRE_ELENGTH:
		return "payload length inconsistent with span, or zero span";
	case WIRE_EFIELD:
		return "field out of bounds or not zero for this type";
	case WIRE_EHELLO:
		return "malformed hello";
	case WIRE_ERLE:
		return "malformed change-record runs";
	default:
		return "unknown wire error";
	}
}

const char *
wire_type_name(unsigned type)
{
	if (type == 0 || type > WIRE_TYPE_MAX)
		return "UNKNOWN";
	return wire_types[type].ti_name;
}

void
wire_encode_hdr(uint8_t *out, const struct wire_hdr *hdr)
{
	put32(out + 0, WIRE_MAGIC);
	put16(out + 4, hdr->version != 0 ? hdr->version : WIRE_VERSION);
	put16(out + 6, hdr->type);
	put32(out + 8, hdr->flags);
	put32(out + 12, hdr->plen);
	put64(out + 16, hdr->seq);
	put64(out + 24, hdr->frontier);
	put64(out + 32, hdr->offset);
	put64(out + 40, hdr->length);
}

/* Payload presence and size: EPAYLOAD, EHELLO, ETOOBIG, ELENGTH. */
static int
wire_check_payload(const struct wire_hdr *h, const struct wire_typeinfo *ti,
    const struct wire_limits *lim)
{
	if ((ti->ti_rules & T_NOPAYLOAD) && h->plen != 0)
		return WIRE_EPAYLOAD;
	if (h->type == WIRE_HELLO || h->type == WIRE_HELLO_ACK)
		return h->plen == WIRE_HELLO_SIZE ? WIRE_OK : WIRE_EHELLO;
	if (h->plen > lim->max_payload)
		return WIRE_ETOOBIG;
	/* The answer to a READ_REQ, and the data a CSUM_REQ has the mirror
	 * read, are bounded like a payload. */
	if ((h->type == WIRE_READ_REQ || h->type == WIRE_CSUM_REQ) &&
	    h->length > lim->max_payload)
		return WIRE_ETOOBIG;

	if ((ti->ti_rules & T_SPAN) && h->length == 0)
		return WIRE_ELENGTH;
	if ((ti->ti_rules & T_PLEN_EQ_LEN) && h->plen != h->length)
		return WIRE_ELENGTH;
	switch (h->type) {
	case WIRE_CSUM_REPLY:
		if (h->plen == 0 || h->plen % WIRE_DIGEST_LEN != 0)
			return WIRE_ELENGTH;
		break;
	case WIRE_CR_XFER:
		if (h->plen == 0 || h->plen % 4 != 0 || h->length == 0)
			return WIRE_ELENGTH;
		break;
	default:
		break;
	}
	return WIRE_OK;
}

/* Span and alignment: ERANGE, EALIGN. */
static int
wire_check_span(const struct wire_hdr *h, const struct wire_typeinfo *ti,
    const struct wire_limits *lim)
{
	uint64_t align = lim->align != 0 ? lim->align : 1;

	if (h->type == WIRE_CR_XFER) {
		/* Extent indices: no volume or alignment, only overflow. */
		if (h->offset > UINT64_MAX - h->length)
			return WIRE_ERANGE;
		return WIRE_OK;
	}
	if (!(ti->ti_rules & T_SPAN))
		return WIRE_OK;
	if (h->offset > UINT64_MAX - h->length ||
	    h->offset + h->length > lim->volume_size)
		return WIRE_ERANGE;
	if (h->offset % align != 0 || h->length % align != 0)
		return WIRE_EALIGN;
	return WIRE_OK;
}

/* Fields the type does not use or bounds: EFIELD. */
static int
wire_check_fields(const struct wire_hdr *h, const struct wire_typeinfo *ti)
{
	if ((ti->ti_rules & T_NOSPAN) && (h->offset != 0 || h->length != 0))
		return WIRE_EFIELD;
	if (h->type == WIRE_ACK) {
		if (WIRE_ACK_KIND(h->flags) != WIRE_ACK_RECEIVED &&
		    WIRE_ACK_KIND(h->flags) != WIRE_ACK_APPLIED)
			return WIRE_EFIELD;
	} else if ((h->flags & ~ti->ti_flags) != 0)
		return WIRE_EFIELD;
	if (h->type == WIRE_GOODBYE && h->plen > WIRE_REASON_MAX)
		return WIRE_EFIELD;
	return WIRE_OK;
}

int
wire_decode_hdr(const uint8_t *buf, size_t len,
    const struct wire_limits *lim, struct wire_hdr *hdr)
{
	struct wire_hdr h;
	const struct wire_typeinfo *ti;
	int rc;

	if (len < WIRE_HDR_SIZE)
		return WIRE_ESHORT;
	if (get32(buf + 0) != WIRE_MAGIC)
		return WIRE_EMAGIC;
	h.version = get16(buf + 4);
	if (h.version != WIRE_VERSION)
		return WIRE_EVERSION;
	h.type = get16(buf + 6);
	if (h.type == 0 || h.type > WIRE_TYPE_MAX)
		return WIRE_ETYPE;
	h.flags = get32(buf + 8);
	h.plen = get32(buf + 12);
	h.seq = get64(buf + 16);
	h.frontier = get64(buf + 24);
	h.offset = get64(buf + 32);
	h.length = get64(buf + 40);
	ti = &wire_types[h.type];

	if ((rc = wire_check_payload(&h, ti, lim)) != WIRE_OK ||
	    (rc = wire_check_span(&h, ti, lim)) != WIRE_OK ||
	    (rc = wire_check_fields(&h, ti)) != WIRE_OK)
		return rc;
	*hdr = h;
	return WIRE_OK;
}

void
wire_encode_hello(uint8_t *out, const struct wire_hello *h)
{
	size_t rlen;
	int i;

	memset(out, 0, WIRE_HELLO_SIZE);
	put32(out + HELLO_OFF_PROTO, h->proto_version);
	put32(out + HELLO_OFF_CAPS, h->capabilities);
	memcpy(out + HELLO_OFF_UUID, h->uuid, WIRE_UUID_LEN);
	put64(out + HELLO_OFF_VOLSIZE, h->volume_size);
	put32(out + HELLO_OFF_EXTSIZE, h->extent_size);
	put32(out + HELLO_OFF_MAXPAY, h->max_payload);
	put64(out + HELLO_OFF_GENCUR, h->gen_current);
	for (i = 0; i < WIRE_GEN_HISTORY; i++)
		put64(out + HELLO_OFF_GENHIST + 8 * i, h->gen_history[i]);
	put32(out + HELLO_OFF_STATUS, (uint32_t)h->status);
	put32(out + HELLO_OFF_HFLAGS, h->hflags);
	rlen = strnlen(h->reason, WIRE_REASON_MAX - 1);
	memcpy(out + HELLO_OFF_REASON, h->reason, rlen);
}

int
wire_decode_hello(const uint8_t *buf, size_t len, struct wire_hello *h)
{
	const uint8_t *r = buf + HELLO_OFF_REASON;
	uint32_t status;
	size_t rlen, i;

	if (len != WIRE_HELLO_SIZE)
		return WIRE_EHELLO;
	status = get32(buf + HELLO_OFF_STATUS);
	if (status > INT32_MAX)
		return WIRE_EHELLO;
	for (rlen = 0; rlen < WIRE_REASON_MAX && r[rlen] != 0; rlen++)
		;
	if (rlen == WIRE_REASON_MAX)
		return WIRE_EHELLO;
	for (i = rlen; i < WIRE_REASON_MAX; i++)
		if (r[i] != 0)
			return WIRE_EHELLO;

	h->proto_version = get32(buf + HELLO_OFF_PROTO);
	h->capabilities = get32(buf + HELLO_OFF_CAPS);
	memcpy(h->uuid, buf + HELLO_OFF_UUID, WIRE_UUID_LEN);
	h->volume_size = get64(buf + HELLO_OFF_VOLSIZE);
	h->extent_size = get32(buf + HELLO_OFF_EXTSIZE);
	h->max_payload = get32(buf + HELLO_OFF_MAXPAY);
	h->gen_current = get64(buf + HELLO_OFF_GENCUR);
	for (i = 0; i < WIRE_GEN_HISTORY; i++)
		h->gen_history[i] = get64(buf + HELLO_OFF_GENHIST + 8 * i);
	h->status = (int32_t)status;
	h->hflags = get32(buf + HELLO_OFF_HFLAGS);
	memcpy(h->reason, r, WIRE_REASON_MAX);
	h->reason[WIRE_REASON_MAX - 1] = '\0';
	return WIRE_OK;
}

static inline bool
bit_get(const uint8_t *bits, uint64_t i)
{
	return (bits[i / 8] >> (i % 8)) & 1;
}

/* First index >= i (and <= nbits) whose bit differs from v. */
static uint64_t
bit_scan(const uint8_t *bits, uint64_t i, uint64_t nbits, bool v)
{
	const uint8_t same = v ? 0xff : 0x00;
	const uint64_t same64 = v ? UINT64_MAX : 0;

	while (i < nbits) {
		/* Long clean or dirty stretches are the common case. */
		if (i % 64 == 0 && nbits - i >= 64 &&
		    get64(bits + i / 8) == same64) {
			i += 64;
			continue;
		}
		if (i % 8 == 0 && nbits - i >= 8 && bits[i / 8] == same) {
			i += 8;
			continue;
		}
		if (bit_get(bits, i) != v)
			return i;
		i++;
	}
	return nbits;
}

/* Sets bits [i, i + n). */
static void
bit_set_range(uint8_t *bits, uint64_t i, uint64_t n)
{
	uint64_t end = i + n;

	while (i < end && i % 8 != 0) {
		bits[i / 8] |= (uint8_t)(1u << (i % 8));
		i++;
	}
	if (end - i >= 8) {
		memset(bits + i / 8, 0xff, (size_t)((end - i) / 8));
		i += (end - i) / 8 * 8;
	}
	while (i < end) {
		bits[i / 8] |= (uint8_t)(1u << (i % 8));
		i++;
	}
}

long
wire_encode_runs(const uint8_t *bits, uint64_t nbits, uint8_t *out,
    size_t cap)
{
	size_t used = 0;
	uint64_t i = 0, j, run;
	bool v = false;

	while (i < nbits) {
		j = bit_scan(bits, i, nbits, v);
		run = j - i;
		/* A leading zero clean run is the only zero run, bar splits. */
		for (;;) {
			if (cap - used < 4)
				return -1;
			if (run <= UINT32_MAX) {
				put32(out + used, (uint32_t)run);
				used += 4;
				break;
			}
			if (cap - used < 8)
				return -1;
			put32(out + used, UINT32_MAX);
			put32(out + used + 4, 0);
			used += 8;
			run -= UINT32_MAX;
		}
		i = j;
		v = !v;
	}
	if (used > LONG_MAX)
		return -1;
	return (long)used;
}

int
wire_decode_runs(const uint8_t *buf, size_t len, uint64_t nbits,
    uint8_t *bits)
{
	size_t n = len / 4, k;
	uint64_t sum = 0, pos = 0;
	uint32_t run, prev = 0;

	if (len % 4 != 0)
		return WIRE_ERLE;
	/* Validate everything before writing a bit. */
	for (k = 0; k < n; k++) {
		run = get32(buf + 4 * k);
		if (run == 0) {
			/* Leading clean run, or the gap after a split run;
			 * either way something must follow it. */
			if (k + 1 == n || (k > 0 && prev != UINT32_MAX))
				return WIRE_ERLE;
		}
		if (run > nbits - sum)
			return WIRE_ERLE;
		sum += run;
		prev = run;
	}
	if (sum != nbits)
		return WIRE_ERLE;
	for (k = 0; k < n; k++) {
		run = get32(buf + 4 * k);
		if (k % 2 == 1)
			bit_set_range(bits, pos, run);
		pos += run;
	}
	return WIRE_OK;
}
