/*
 * wire.h: the duet replication protocol, as pure encode/decode over caller
 * buffers. No I/O, no allocation, no globals (hastd's hast_proto.c).
 *
 * Every frame is a fixed 48-byte little-endian header, then `plen` bytes of
 * payload where the type has one:
 *
 *   off size field
 *     0    4 magic     WIRE_MAGIC ("DUET" read as little-endian bytes)
 *     4    2 version   WIRE_VERSION
 *     6    2 type      enum wire_type
 *     8    4 flags     per type (WIRE_F_*; for ACK the status, see below)
 *    12    4 plen      payload length in bytes
 *    16    8 seq       sequence number of the operation
 *    24    8 frontier  highest S with all ops <= S completed on the primary
 *    32    8 offset    byte offset on the volume (extent index for CR_XFER)
 *    40    8 length    span length in bytes
 *
 * Field use per type ("span" = offset+length checked against the volume,
 * "aligned" = offset and length multiples of the negotiated alignment):
 *
 *   HELLO, HELLO_ACK  payload = struct wire_hello encoding; no span
 *   WRITE             span, aligned, length > 0, plen == length
 *   WRITE_ZEROES,TRIM span, aligned, length > 0, plen == 0
 *   FLUSH             plen == 0, offset == length == 0
 *   ACK               plen == 0; seq = the op; flags = WIRE_ACK_* kind in the
 *                     low 8 bits, status (0 or a positive errno) above them
 *   READ_REQ          span, aligned, plen == 0, length <= the maximum
 *   READ_DATA         span, aligned, plen == length (reply to READ_REQ by seq)
 *   CR_XFER           change record chunk: offset = first extent index,
 *                     length = number of extents covered, payload = RLE runs
 *   RESYNC_DATA       span, aligned, plen == length
 *   CSUM_REQ          span, aligned, plen == 0, length <= the maximum
 *   CSUM_REPLY        span, aligned, payload = digests (WIRE_DIGEST_LEN each)
 *   PING              plen == 0 (a reply is a PING with WIRE_F_PONG; the
 *                     primary sets WIRE_F_IN_SYNC once everything before
 *                     it has been sent and nothing is left to resync: the
 *                     mirror is then up to date). The primary's frontier
 *                     rides on it, so an idle mirror learns it too.
 *
 * After HELLO_ACK the mirror sends its change record as CR_XFER frames
 * (the last has WIRE_F_LAST) before anything else; CSUM_REPLY and
 * READ_DATA answer CSUM_REQ and READ_REQ by seq and stand for their ACK.
 *   GOODBYE           payload = optional UTF-8 reason text
 *
 * Every payload-bearing type is bounded by the negotiated maximum.
 */
#ifndef DUET_PROTO_WIRE_H
#define DUET_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC        0x54455544u	/* bytes 'D','U','E','T' */
#define WIRE_VERSION      1
#define WIRE_HDR_SIZE     48
#define WIRE_DIGEST_LEN   32		/* SHA-256 */
#define WIRE_UUID_LEN     16
#define WIRE_GEN_HISTORY  4		/* generation history entries */
#define WIRE_REASON_MAX   256

enum wire_type {
	WIRE_HELLO = 1,
	WIRE_HELLO_ACK,
	WIRE_WRITE,
	WIRE_WRITE_ZEROES,
	WIRE_TRIM,
	WIRE_FLUSH,
	WIRE_ACK,
	WIRE_READ_REQ,
	WIRE_READ_DATA,
	WIRE_CR_XFER,
	WIRE_RESYNC_DATA,
	WIRE_CSUM_REQ,
	WIRE_CSUM_REPLY,
	WIRE_PING,
	WIRE_GOODBYE,
	WIRE_TYPE_MAX = WIRE_GOODBYE
};

/* Frame flags. */
#define WIRE_F_FUA        0x0001u	/* WRITE, WRITE_ZEROES: durable before ack */
#define WIRE_F_NO_HOLE    0x0002u	/* WRITE_ZEROES: allocate, do not punch */
#define WIRE_F_PONG       0x0004u	/* PING: this is the reply */
#define WIRE_F_LAST       0x0008u	/* CR_XFER: final chunk */
#define WIRE_F_IN_SYNC    0x0010u	/* PING: the sync is complete */
#define WIRE_F_COPY       0x0020u	/* WRITE, WRITE_ZEROES: a resync copy of
					 * data the primary has (the mirror
					 * need not track it for a failover) */

/* ACK kinds (low 8 bits of flags); the status sits in bits 8..31. */
#define WIRE_ACK_RECEIVED 1		/* memsync: the mirror has the op */
#define WIRE_ACK_APPLIED  2		/* sync: the mirror applied it */
#define WIRE_ACK_FLAGS(kind, status) ((uint32_t)(kind) | ((uint32_t)(status) << 8))
#define WIRE_ACK_KIND(flags)   ((flags) & 0xffu)
#define WIRE_ACK_STATUS(flags) ((flags) >> 8)

/* HELLO capabilities. */
#define WIRE_CAP_ACK_RECEIVED 0x0001u	/* primary wants RECEIVED acks (memsync) */
#define WIRE_CAP_ACK_APPLIED  0x0002u	/* primary wants APPLIED acks (sync) */

/* HELLO_ACK flags. */
#define WIRE_HF_FULL      0x0001u	/* the mirror shares no generation:
					 * every extent must be copied */

/* HELLO_ACK status (not an errno): the two sides' data generations have
 * diverged; nothing is copied until an operator resolves it. */
#define WIRE_ST_SPLIT_BRAIN 0x10000

/* Decoder results: 0, or a negative reason. Each malformed input has its own. */
enum wire_err {
	WIRE_OK = 0,
	WIRE_ESHORT = -1,	/* not enough bytes yet: read more, not an error */
	WIRE_EMAGIC = -2,	/* bad magic */
	WIRE_EVERSION = -3,	/* protocol version mismatch */
	WIRE_ETYPE = -4,	/* unknown frame type */
	WIRE_ETOOBIG = -5,	/* payload over the negotiated maximum */
	WIRE_ERANGE = -6,	/* offset + length beyond the volume (or overflow) */
	WIRE_EALIGN = -7,	/* offset or length not aligned */
	WIRE_EPAYLOAD = -8,	/* payload on a type that has none */
	WIRE_ELENGTH = -9,	/* plen inconsistent with length, or zero span */
	WIRE_EFIELD = -10,	/* a field that must be zero or bounded is not */
	WIRE_EHELLO = -11,	/* malformed hello payload */
	WIRE_ERLE = -12,	/* malformed change-record runs */
};

struct wire_hdr {
	uint16_t version;
	uint16_t type;
	uint32_t flags;
	uint32_t plen;
	uint64_t seq;
	uint64_t frontier;
	uint64_t offset;
	uint64_t length;
};

/* What the receiver checks each header against. */
struct wire_limits {
	uint32_t max_payload;	/* negotiated maximum payload */
	uint64_t volume_size;	/* bytes; 0 before the hello (no span allowed) */
	uint32_t align;		/* power of two, >= 1 */
};

struct wire_hello {
	uint32_t proto_version;
	uint32_t capabilities;		/* WIRE_CAP_* */
	uint8_t  uuid[WIRE_UUID_LEN];	/* all zero: a fresh side with no identity */
	uint64_t volume_size;
	uint32_t extent_size;
	uint32_t max_payload;
	uint64_t gen_current;
	uint64_t gen_history[WIRE_GEN_HISTORY];
	uint32_t hflags;		/* WIRE_HF_* */
	int32_t  status;		/* HELLO_ACK: 0, a positive errno, or
					 * WIRE_ST_SPLIT_BRAIN */
	char     reason[WIRE_REASON_MAX];	/* HELLO_ACK refusal, NUL-terminated */
};
#define WIRE_HELLO_SIZE 384	/* encoded size, fixed (room to grow) */

/* Human-readable text for a wire_err. */
const char *wire_strerror(int err);
const char *wire_type_name(unsigned type);

/* Encodes hdr into out[WIRE_HDR_SIZE]. */
void wire_encode_hdr(uint8_t *out, const struct wire_hdr *hdr);

/*
 * Decodes and checks a header from buf[len]. Returns WIRE_OK (hdr filled;
 * the payload of hdr->plen bytes follows), WIRE_ESHORT if len <
 * WIRE_HDR_SIZE, or another negative wire_err. Checks, in order: magic,
 * version, type, payload presence and bounds, span and alignment.
 */
int wire_decode_hdr(const uint8_t *buf, size_t len,
    const struct wire_limits *lim, struct wire_hdr *hdr);

/* Hello payload: encode into out[WIRE_HELLO_SIZE]; decode checks lengths
 * and NUL-terminates reason. */
void wire_encode_hello(uint8_t *out, const struct wire_hello *h);
int wire_decode_hello(const uint8_t *buf, size_t len, struct wire_hello *h);

/*
 * Change record runs: a bitmap of `nbits` bits (bit i = extent first+i) is
 * sent as alternating run lengths, starting with a clean run (possibly 0),
 * each a little-endian uint32. wire_encode_runs writes at most cap bytes and
 * returns the bytes written, or -1 if cap is too small. wire_decode_runs
 * fills bits (nbits bits, caller zeroed) and returns 0 or WIRE_ERLE when the
 * runs do not sum to nbits or the payload is not a multiple of 4.
 */
long wire_encode_runs(const uint8_t *bits, uint64_t nbits, uint8_t *out,
    size_t cap);
int wire_decode_runs(const uint8_t *buf, size_t len, uint64_t nbits,
    uint8_t *bits);

#endif
