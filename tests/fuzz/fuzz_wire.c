/*
 * fuzz_wire.c: libFuzzer target for the wire decoder, the first code that
 * sees a hostile peer's bytes. The first input byte picks the limits (a
 * receiver before the hello, typical, tiny, huge volume); the rest is a frame.
 * Besides "does not crash", it checks the properties the codec promises:
 * a header that decodes re-encodes to the same bytes and decodes to the same
 * fields; a hello or change-record payload that decodes re-encodes to the
 * same bytes (both encodings are canonical); and the hello and run decoders
 * also get the raw input, unframed.
 *
 * Random bytes almost never make a valid hello (NUL-padded reason) or a
 * valid run list (runs summing to nbits), so when the top bits of the first
 * byte say so, the input is instead taken as a hello struct or a bitmap,
 * encoded, checked to decode back to the same thing, then corrupted at an
 * input-chosen byte and decoded again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"

#define FUZZ_MAX_NBITS	(UINT64_C(1) << 20)

static const struct wire_limits fuzz_limits[] = {
	{ .max_payload = 0, .volume_size = 0, .align = 1 },	/* pre-hello */
	{ .max_payload = 1 << 20, .volume_size = UINT64_C(1) << 30,
	    .align = 4096 },
	{ .max_payload = 512, .volume_size = 1 << 16, .align = 512 },
	{ .max_payload = UINT32_MAX, .volume_size = UINT64_MAX, .align = 1 },
};

static uint8_t fuzz_bits[FUZZ_MAX_NBITS / 8];
static uint8_t fuzz_out[(FUZZ_MAX_NBITS + 1) * 4 + 8];

static void
fuzz_hello(const uint8_t *p, size_t len)
{
	struct wire_hello h;
	uint8_t again[WIRE_HELLO_SIZE];

	if (wire_decode_hello(p, len, &h) != WIRE_OK)
		return;
	if (strlen(h.reason) >= WIRE_REASON_MAX)
		abort();
	wire_encode_hello(again, &h);
	/* The reserved bytes are ignored on receipt; compare the rest. */
	if (memcmp(again, p, 84) != 0 || memcmp(again + 128, p + 128,
	    WIRE_HELLO_SIZE - 128) != 0)
		abort();
}

static void
fuzz_runs(const uint8_t *p, size_t len, uint64_t nbits)
{
	long n;

	if (nbits > FUZZ_MAX_NBITS)
		return;
	memset(fuzz_bits, 0, (size_t)(nbits + 7) / 8);
	if (wire_decode_runs(p, len, nbits, fuzz_bits) != WIRE_OK)
		return;
	n = wire_encode_runs(fuzz_bits, nbits, fuzz_out, sizeof(fuzz_out));
	if (n < 0 || (size_t)n != len || memcmp(fuzz_out, p, len) != 0)
		abort();
}

static void
fuzz_frame(const uint8_t *p, size_t len, const struct wire_limits *lim)
{
	struct wire_hdr h, h2;
	uint8_t again[WIRE_HDR_SIZE];
	int rc;

	rc = wire_decode_hdr(p, len, lim, &h);
	if (wire_strerror(rc) == NULL)
		abort();
	if (rc != WIRE_OK)
		return;
	if (wire_type_name(h.type) == NULL)
		abort();

	wire_encode_hdr(again, &h);
	if (memcmp(again, p, WIRE_HDR_SIZE) != 0)
		abort();
	if (wire_decode_hdr(again, sizeof(again), lim, &h2) != WIRE_OK ||
	    h2.version != h.version || h2.type != h.type ||
	    h2.flags != h.flags || h2.plen != h.plen || h2.seq != h.seq ||
	    h2.frontier != h.frontier || h2.offset != h.offset ||
	    h2.length != h.length)
		abort();

	/* What the header promises. */
	if (h.plen > lim->max_payload && h.type != WIRE_HELLO &&
	    h.type != WIRE_HELLO_ACK)
		abort();
	if ((h.type == WIRE_WRITE || h.type == WIRE_READ_DATA ||
	    h.type == WIRE_RESYNC_DATA || h.type == WIRE_TRIM) &&
	    (h.length == 0 || h.offset + h.length < h.offset ||
	    h.offset + h.length > lim->volume_size ||
	    h.offset % lim->align != 0 || h.length % lim->align != 0))
		abort();

	if (len - WIRE_HDR_SIZE < h.plen)
		return;
	p += WIRE_HDR_SIZE;
	switch (h.type) {
	case WIRE_HELLO:
	case WIRE_HELLO_ACK:
		fuzz_hello(p, h.plen);
		break;
	case WIRE_CR_XFER:
		fuzz_runs(p, h.plen, h.length);
		break;
	default:
		break;
	}
}

/* Input as a hello struct: encode, decode, compare, corrupt, decode. */
static void
fuzz_hello_struct(const uint8_t *p, size_t len)
{
	struct wire_hello in, out;
	uint8_t enc[WIRE_HELLO_SIZE];
	size_t at;

	if (len < 2)
		return;
	at = ((size_t)p[0] | (size_t)p[1] << 8) % WIRE_HELLO_SIZE;
	p += 2;
	len -= 2;
	memset(&in, 0, sizeof(in));
	memcpy(&in, p, len < sizeof(in) ? len : sizeof(in));
	in.status &= INT32_MAX;
	wire_encode_hello(enc, &in);
	if (wire_decode_hello(enc, sizeof(enc), &out) != WIRE_OK)
		abort();
	in.reason[WIRE_REASON_MAX - 1] = '\0';
	if (out.proto_version != in.proto_version ||
	    out.capabilities != in.capabilities ||
	    memcmp(out.uuid, in.uuid, WIRE_UUID_LEN) != 0 ||
	    out.volume_size != in.volume_size ||
	    out.extent_size != in.extent_size ||
	    out.max_payload != in.max_payload ||
	    out.gen_current != in.gen_current ||
	    memcmp(out.gen_history, in.gen_history,
	    sizeof(in.gen_history)) != 0 || out.status != in.status ||
	    strcmp(out.reason, in.reason) != 0)
		abort();
	enc[at] ^= (uint8_t)(len > 0 ? p[0] | 1 : 1);
	fuzz_hello(enc, sizeof(enc));
}

/* Input as a bitmap: encode, decode, compare, corrupt, decode. */
static void
fuzz_bitmap(const uint8_t *p, size_t len)
{
	static uint8_t back[FUZZ_MAX_NBITS / 8 + 1];
	static uint8_t bad[sizeof(fuzz_out)];
	uint64_t nbits, i;
	size_t at;
	long n;

	if (len < 3)
		return;
	at = (size_t)p[0] | (size_t)p[1] << 8;
	nbits = (uint64_t)(len - 3) * 8;
	nbits -= nbits >= 8 ? p[2] % 8 : 0;
	p += 3;
	if (nbits > FUZZ_MAX_NBITS)
		return;
	n = wire_encode_runs(p, nbits, fuzz_out, sizeof(fuzz_out));
	if (n < 0)
		abort();
	memset(back, 0, (size_t)(nbits + 7) / 8 + 1);
	if (wire_decode_runs(fuzz_out, (size_t)n, nbits, back) != WIRE_OK)
		abort();
	for (i = 0; i < nbits; i++)
		if (((back[i / 8] ^ p[i / 8]) >> (i % 8)) & 1)
			abort();
	for (; i < (nbits + 7) / 8 * 8 + 8; i++)
		if ((back[i / 8] >> (i % 8)) & 1)
			abort();
	if (n > 0) {
		/* fuzz_runs encodes into fuzz_out: corrupt a copy. */
		memcpy(bad, fuzz_out, (size_t)n);
		bad[at % (size_t)n] ^= (uint8_t)(1u << (at >> 13));
		fuzz_runs(bad, (size_t)n, nbits);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct wire_limits *lim;

	if (size < 1)
		return 0;
	switch (data[0] >> 6) {
	case 2:
		fuzz_hello_struct(data + 1, size - 1);
		return 0;
	case 3:
		fuzz_bitmap(data + 1, size - 1);
		return 0;
	}
	lim = &fuzz_limits[data[0] % (sizeof(fuzz_limits) /
	    sizeof(fuzz_limits[0]))];
	fuzz_frame(data + 1, size - 1, lim);

	/* The payload decoders alone, on the raw bytes. */
	fuzz_hello(data + 1, size - 1);
	if (size >= 3)
		fuzz_runs(data + 3, size - 3,
		    (uint64_t)data[1] | (uint64_t)data[2] << 8);
	return 0;
}
