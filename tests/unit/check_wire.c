/*
 * check_wire.c: the wire codec. Core holds the round trips (every frame type,
 * the hello, the change-record runs) and the byte layout; Limits the edges
 * that must still pass; Errors every malformed input, each with its own
 * reason code. A decoder that says only "bad" would make a hostile peer's log
 * line useless, so each test asserts the exact wire_err.
 */
#include <check.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"

#define VOL	(UINT64_C(1) << 30)
#define MAXPAY	(UINT32_C(1) << 20)
#define ALIGN	4096u

static const struct wire_limits lim = {
	.max_payload = MAXPAY, .volume_size = VOL, .align = ALIGN,
};

static struct wire_hdr
mkhdr(unsigned type, uint32_t flags, uint32_t plen, uint64_t offset,
    uint64_t length)
{
	struct wire_hdr h = {
		.version = WIRE_VERSION, .type = (uint16_t)type,
		.flags = flags, .plen = plen,
		.seq = UINT64_C(0x0123456789abcdef) + type,
		.frontier = UINT64_C(0xfedcba9876543210) - type,
		.offset = offset, .length = length,
	};
	return h;
}

/* Encodes h and decodes it against l; returns the decoder's result. */
static int
decode_with(const struct wire_hdr *h, const struct wire_limits *l,
    struct wire_hdr *out)
{
	uint8_t buf[WIRE_HDR_SIZE];
	struct wire_hdr dummy;

	wire_encode_hdr(buf, h);
	return wire_decode_hdr(buf, sizeof(buf), l, out != NULL ? out : &dummy);
}

static int
decode(const struct wire_hdr *h)
{
	return decode_with(h, &lim, NULL);
}

#define ck_assert_err(got, want) do {					\
	int got_ = (got), want_ = (want);				\
	ck_assert_msg(got_ == want_, "got %d (%s), want %d (%s)",	\
	    got_, wire_strerror(got_), want_, wire_strerror(want_));	\
} while (0)

/* One valid header per type; index = type. */
static struct wire_hdr
valid_hdr(unsigned type)
{
	switch (type) {
	case WIRE_HELLO:
	case WIRE_HELLO_ACK:
		return mkhdr(type, 0, WIRE_HELLO_SIZE, 0, 0);
	case WIRE_WRITE:
		return mkhdr(type, WIRE_F_FUA, 8192, 4096, 8192);
	case WIRE_WRITE_ZEROES:
		return mkhdr(type, WIRE_F_FUA | WIRE_F_NO_HOLE, 0, 0, 1 << 24);
	case WIRE_TRIM:
		return mkhdr(type, 0, 0, VOL - 4096, 4096);
	case WIRE_FLUSH:
		return mkhdr(type, 0, 0, 0, 0);
	case WIRE_ACK:
		return mkhdr(type, WIRE_ACK_FLAGS(WIRE_ACK_APPLIED, 28), 0, 0, 0);
	case WIRE_READ_REQ:
		return mkhdr(type, 0, 0, 8192, 65536);
	case WIRE_READ_DATA:
		return mkhdr(type, 0, 65536, 8192, 65536);
	case WIRE_CR_XFER:
		return mkhdr(type, WIRE_F_LAST, 12, 1001, 77);
	case WIRE_RESYNC_DATA:
		return mkhdr(type, 0, MAXPAY, VOL - MAXPAY, MAXPAY);
	case WIRE_CSUM_REQ:
		return mkhdr(type, 0, 0, VOL - MAXPAY, MAXPAY);
	case WIRE_CSUM_REPLY:
		return mkhdr(type, 0, 2 * WIRE_DIGEST_LEN, 0, 8192);
	case WIRE_PING:
		return mkhdr(type, WIRE_F_PONG, 0, 0, 0);
	case WIRE_GOODBYE:
		return mkhdr(type, 0, 11, 0, 0);
	}
	ck_abort_msg("no valid header for type %u", type);
	return mkhdr(0, 0, 0, 0, 0);
}

/* ---- Core ---- */

START_TEST(test_roundtrip_type)
{
	unsigned type = (unsigned)_i;
	struct wire_hdr in = valid_hdr(type), out;
	uint8_t buf[WIRE_HDR_SIZE], again[WIRE_HDR_SIZE];

	memset(&out, 0xa5, sizeof(out));
	wire_encode_hdr(buf, &in);
	ck_assert_err(wire_decode_hdr(buf, sizeof(buf), &lim, &out), WIRE_OK);
	ck_assert_uint_eq(out.version, in.version);
	ck_assert_uint_eq(out.type, in.type);
	ck_assert_uint_eq(out.flags, in.flags);
	ck_assert_uint_eq(out.plen, in.plen);
	ck_assert_uint_eq(out.seq, in.seq);
	ck_assert_uint_eq(out.frontier, in.frontier);
	ck_assert_uint_eq(out.offset, in.offset);
	ck_assert_uint_eq(out.length, in.length);
	wire_encode_hdr(again, &out);
	ck_assert_mem_eq(again, buf, sizeof(buf));
	ck_assert_str_ne(wire_type_name(type), "UNKNOWN");
}
END_TEST

START_TEST(test_layout)
{
	struct wire_hdr h = mkhdr(WIRE_WRITE, WIRE_F_FUA, 4096, 4096, 4096);
	uint8_t buf[WIRE_HDR_SIZE];

	h.seq = UINT64_C(0x0807060504030201);
	wire_encode_hdr(buf, &h);
	ck_assert_mem_eq(buf, "DUET", 4);
	ck_assert_uint_eq(buf[4], WIRE_VERSION);
	ck_assert_uint_eq(buf[5], 0);
	ck_assert_uint_eq(buf[6], WIRE_WRITE);
	ck_assert_uint_eq(buf[8], WIRE_F_FUA);
	ck_assert_uint_eq(buf[12], 0x00);
	ck_assert_uint_eq(buf[13], 0x10);
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(buf[16 + i], i + 1);
	ck_assert_uint_eq(buf[33], 0x10);
	ck_assert_uint_eq(buf[41], 0x10);
}
END_TEST

START_TEST(test_version_zero_encodes_current)
{
	struct wire_hdr h = mkhdr(WIRE_FLUSH, 0, 0, 0, 0), out;

	h.version = 0;
	ck_assert_err(decode_with(&h, &lim, &out), WIRE_OK);
	ck_assert_uint_eq(out.version, WIRE_VERSION);
}
END_TEST

static struct wire_hello
sample_hello(void)
{
	struct wire_hello h;

	memset(&h, 0, sizeof(h));
	h.proto_version = WIRE_VERSION;
	h.capabilities = WIRE_CAP_ACK_RECEIVED | WIRE_CAP_ACK_APPLIED;
	for (int i = 0; i < WIRE_UUID_LEN; i++)
		h.uuid[i] = (uint8_t)(0xf0 + i);
	h.volume_size = UINT64_C(20) << 30;
	h.extent_size = 65536;
	h.max_payload = MAXPAY;
	h.gen_current = UINT64_C(0x1122334455667788);
	for (int i = 0; i < WIRE_GEN_HISTORY; i++)
		h.gen_history[i] = UINT64_C(0x8000000000000000) + (uint64_t)i;
	h.status = 13;
	h.hflags = WIRE_HF_FULL;
	strcpy(h.reason, "volume UUID mismatch");
	return h;
}

static void
assert_hello_eq(const struct wire_hello *a, const struct wire_hello *b)
{
	ck_assert_uint_eq(a->proto_version, b->proto_version);
	ck_assert_uint_eq(a->capabilities, b->capabilities);
	ck_assert_mem_eq(a->uuid, b->uuid, WIRE_UUID_LEN);
	ck_assert_uint_eq(a->volume_size, b->volume_size);
	ck_assert_uint_eq(a->extent_size, b->extent_size);
	ck_assert_uint_eq(a->max_payload, b->max_payload);
	ck_assert_uint_eq(a->gen_current, b->gen_current);
	for (int i = 0; i < WIRE_GEN_HISTORY; i++)
		ck_assert_uint_eq(a->gen_history[i], b->gen_history[i]);
	ck_assert_int_eq(a->status, b->status);
	ck_assert_uint_eq(a->hflags, b->hflags);
	ck_assert_str_eq(a->reason, b->reason);
}

START_TEST(test_hello_roundtrip)
{
	struct wire_hello in = sample_hello(), out;
	uint8_t buf[WIRE_HELLO_SIZE], again[WIRE_HELLO_SIZE];

	memset(&out, 0x5a, sizeof(out));
	wire_encode_hello(buf, &in);
	ck_assert_err(wire_decode_hello(buf, sizeof(buf), &out), WIRE_OK);
	assert_hello_eq(&in, &out);
	wire_encode_hello(again, &out);
	ck_assert_mem_eq(again, buf, sizeof(buf));

	/* Empty reason, zero uuid: a fresh side. */
	memset(in.uuid, 0, sizeof(in.uuid));
	in.reason[0] = '\0';
	in.status = 0;
	wire_encode_hello(buf, &in);
	ck_assert_err(wire_decode_hello(buf, sizeof(buf), &out), WIRE_OK);
	assert_hello_eq(&in, &out);
}
END_TEST

START_TEST(test_hello_long_reason)
{
	struct wire_hello in = sample_hello(), out;
	uint8_t buf[WIRE_HELLO_SIZE];

	/* 255 characters: the most that fits with its NUL. */
	memset(in.reason, 'r', WIRE_REASON_MAX - 1);
	in.reason[WIRE_REASON_MAX - 1] = '\0';
	wire_encode_hello(buf, &in);
	ck_assert_err(wire_decode_hello(buf, sizeof(buf), &out), WIRE_OK);
	ck_assert_uint_eq(strlen(out.reason), WIRE_REASON_MAX - 1);
	assert_hello_eq(&in, &out);

	/* Unterminated in the struct: sent truncated, still decodes. */
	memset(in.reason, 'x', WIRE_REASON_MAX);
	wire_encode_hello(buf, &in);
	ck_assert_err(wire_decode_hello(buf, sizeof(buf), &out), WIRE_OK);
	ck_assert_uint_eq(strlen(out.reason), WIRE_REASON_MAX - 1);
}
END_TEST

/* ---- runs ---- */

static uint64_t rng_state = UINT64_C(0x9e3779b97f4a7c15);

static uint64_t
rng(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static int
getbit(const uint8_t *b, uint64_t i)
{
	return (b[i / 8] >> (i % 8)) & 1;
}

static void
setbit(uint8_t *b, uint64_t i)
{
	b[i / 8] |= (uint8_t)(1u << (i % 8));
}

/* Encodes bits, checks the runs by hand, decodes and compares. */
static void
runs_roundtrip(const uint8_t *bits, uint64_t nbits)
{
	size_t nbytes = (size_t)((nbits + 7) / 8), cap = (size_t)(nbits + 1) * 4 + 8;
	uint8_t *out = malloc(cap), *back = calloc(nbytes + 1, 1);
	uint64_t i, sum = 0, k;
	long n;

	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(back);
	n = wire_encode_runs(bits, nbits, out, cap);
	ck_assert_int_ge(n, 0);
	ck_assert_int_eq(n % 4, 0);
	/* The runs alternate clean, dirty, ... and match the bitmap. */
	for (k = 0; k < (uint64_t)n / 4; k++) {
		uint32_t run = (uint32_t)out[4 * k] |
		    (uint32_t)out[4 * k + 1] << 8 |
		    (uint32_t)out[4 * k + 2] << 16 |
		    (uint32_t)out[4 * k + 3] << 24;
		ck_assert(run > 0 || k == 0);
		ck_assert_uint_le(run, nbits - sum);
		for (i = sum; i < sum + run; i++)
			if (getbit(bits, i) != (int)(k % 2))
				ck_abort_msg("run %ju disagrees at bit %ju",
				    (uintmax_t)k, (uintmax_t)i);
		sum += run;
	}
	ck_assert_uint_eq(sum, nbits);
	/* Exactly cap-sized output works, one byte less does not. */
	if (n > 0)
		ck_assert_int_eq(wire_encode_runs(bits, nbits, out,
		    (size_t)n - 1), -1);
	ck_assert_int_eq(wire_encode_runs(bits, nbits, out, (size_t)n), n);

	ck_assert_err(wire_decode_runs(out, (size_t)n, nbits, back), WIRE_OK);
	/* Per-bit ck_asserts would each mark a point: compare, then fail. */
	for (i = 0; i < nbits; i++)
		if (getbit(back, i) != getbit(bits, i))
			ck_abort_msg("bit %ju differs after decode",
			    (uintmax_t)i);
	for (i = nbits; i < (uint64_t)(nbytes + 1) * 8; i++)
		if (getbit(back, i) != 0)
			ck_abort_msg("bit %ju past nbits set", (uintmax_t)i);
	free(out);
	free(back);
}

START_TEST(test_runs_empty)
{
	uint8_t bits[1] = { 0xff }, out[8], back[1] = { 0 };

	ck_assert_int_eq(wire_encode_runs(bits, 0, out, sizeof(out)), 0);
	ck_assert_int_eq(wire_encode_runs(bits, 0, out, 0), 0);
	ck_assert_err(wire_decode_runs(out, 0, 0, back), WIRE_OK);
	ck_assert_uint_eq(back[0], 0);
}
END_TEST

START_TEST(test_runs_all_set)
{
	uint8_t bits[125], out[16];

	memset(bits, 0xff, sizeof(bits));
	runs_roundtrip(bits, 1000);
	runs_roundtrip(bits, 997);
	runs_roundtrip(bits, 1);
	/* A leading zero clean run, then one dirty run. */
	ck_assert_int_eq(wire_encode_runs(bits, 1000, out, sizeof(out)), 8);
	ck_assert_mem_eq(out, "\0\0\0\0\xe8\x03\0\0", 8);
}
END_TEST

START_TEST(test_runs_all_clear)
{
	uint8_t bits[125], out[16];

	memset(bits, 0, sizeof(bits));
	runs_roundtrip(bits, 1000);
	runs_roundtrip(bits, 3);
	ck_assert_int_eq(wire_encode_runs(bits, 1000, out, sizeof(out)), 4);
	ck_assert_mem_eq(out, "\xe8\x03\0\0", 4);
}
END_TEST

START_TEST(test_runs_padding_ignored)
{
	/* Bits past nbits in the last byte are not part of the bitmap. */
	uint8_t bits[2] = { 0x01, 0xfe }, out[16];

	ck_assert_int_eq(wire_encode_runs(bits, 9, out, sizeof(out)), 12);
	ck_assert_mem_eq(out, "\0\0\0\0\x01\0\0\0\x08\0\0\0", 12);
}
END_TEST

START_TEST(test_runs_random)
{
	static const uint64_t sizes[] = {
		1, 7, 9, 13, 63, 65, 127, 129, 1001, 4097, 12345, 99999,
	};
	static const unsigned density[] = { 1, 8, 50, 92, 99 };

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (size_t d = 0; d < sizeof(density) / sizeof(density[0]);
		    d++) {
			uint64_t nbits = sizes[s];
			uint8_t *bits = calloc((size_t)(nbits + 7) / 8, 1);

			ck_assert_ptr_nonnull(bits);
			for (uint64_t i = 0; i < nbits; i++)
				if (rng() % 100 < density[d])
					setbit(bits, i);
			runs_roundtrip(bits, nbits);
			/* Clustered: runs of random lengths. */
			memset(bits, 0, (size_t)(nbits + 7) / 8);
			for (uint64_t i = 0; i < nbits;) {
				uint64_t len = 1 + rng() % 300;
				int v = rng() % 2;

				for (; len > 0 && i < nbits; len--, i++)
					if (v)
						setbit(bits, i);
			}
			runs_roundtrip(bits, nbits);
			free(bits);
		}
}
END_TEST

START_TEST(test_runs_long)
{
	/* Runs longer than 2^16: clean 70000, dirty 100001, clean rest. */
	const uint64_t nbits = 300001;
	uint8_t *bits = calloc((nbits + 7) / 8, 1), out[16];

	ck_assert_ptr_nonnull(bits);
	for (uint64_t i = 70000; i < 170001; i++)
		setbit(bits, i);
	runs_roundtrip(bits, nbits);
	ck_assert_int_eq(wire_encode_runs(bits, nbits, out, sizeof(out)), 12);
	ck_assert_mem_eq(out, "\x70\x11\x01\0\xa1\x86\x01\0\xd0\xfb\x01\0",
	    12);
	free(bits);
}
END_TEST

START_TEST(test_runs_split)
{
	/* A clean run past UINT32_MAX goes as UINT32_MAX, 0, rest. The bitmap
	 * is 512 MiB of calloc'd zero pages, only read. */
	const uint64_t nbits = (UINT64_C(1) << 32) + 10;
	uint8_t *bits = calloc((size_t)(nbits / 8 + 1), 1), out[16];
	uint8_t back[4] = { 0 };

	if (bits == NULL)
		return;	/* no address space for it; nothing to prove */
	ck_assert_int_eq(wire_encode_runs(bits, nbits, out, sizeof(out)), 12);
	ck_assert_mem_eq(out, "\xff\xff\xff\xff\0\0\0\0\x0b\0\0\0", 12);
	ck_assert_int_eq(wire_encode_runs(bits, nbits, out, 8), -1);
	free(bits);
	/* Decoding writes only dirty bits, so a small buffer will do. */
	ck_assert_err(wire_decode_runs(out, 12, nbits, back), WIRE_OK);
	ck_assert_uint_eq(back[0], 0);
}
END_TEST

/* ---- Limits ---- */

START_TEST(test_limit_short)
{
	uint8_t buf[WIRE_HDR_SIZE + 100];
	struct wire_hdr h = valid_hdr(WIRE_FLUSH), out;

	memset(buf, 0xee, sizeof(buf));
	wire_encode_hdr(buf, &h);
	for (size_t n = 0; n < WIRE_HDR_SIZE; n++)
		ck_assert_err(wire_decode_hdr(buf, n, &lim, &out), WIRE_ESHORT);
	ck_assert_err(wire_decode_hdr(buf, WIRE_HDR_SIZE, &lim, &out), WIRE_OK);
	/* Bytes past the header are the caller's (payload or next frame). */
	ck_assert_err(wire_decode_hdr(buf, sizeof(buf), &lim, &out), WIRE_OK);
}
END_TEST

START_TEST(test_limit_payload_max)
{
	struct wire_hdr h = mkhdr(WIRE_WRITE, 0, MAXPAY, 0, MAXPAY);

	ck_assert_err(decode(&h), WIRE_OK);
	h = mkhdr(WIRE_GOODBYE, 0, WIRE_REASON_MAX, 0, 0);
	ck_assert_err(decode(&h), WIRE_OK);
	/* READ_REQ's reply must fit the maximum. */
	h = mkhdr(WIRE_READ_REQ, 0, 0, 0, MAXPAY);
	ck_assert_err(decode(&h), WIRE_OK);
	/* So must the span a CSUM_REQ has the mirror read. */
	h = mkhdr(WIRE_CSUM_REQ, 0, 0, 0, MAXPAY);
	ck_assert_err(decode(&h), WIRE_OK);
}
END_TEST

START_TEST(test_limit_volume_edge)
{
	struct wire_hdr h = mkhdr(WIRE_TRIM, 0, 0, 0, VOL);

	ck_assert_err(decode(&h), WIRE_OK);
	h = mkhdr(WIRE_WRITE_ZEROES, 0, 0, VOL - ALIGN, ALIGN);
	ck_assert_err(decode(&h), WIRE_OK);
}
END_TEST

START_TEST(test_limit_before_hello)
{
	/* Nothing negotiated: hellos pass, any span is out of range. */
	const struct wire_limits l0 = { .max_payload = 0, .volume_size = 0,
	    .align = 1 };
	struct wire_hdr h = valid_hdr(WIRE_HELLO);

	ck_assert_err(decode_with(&h, &l0, NULL), WIRE_OK);
	h = valid_hdr(WIRE_HELLO_ACK);
	ck_assert_err(decode_with(&h, &l0, NULL), WIRE_OK);
	h = mkhdr(WIRE_TRIM, 0, 0, 0, 1);
	ck_assert_err(decode_with(&h, &l0, NULL), WIRE_ERANGE);
	h = valid_hdr(WIRE_PING);
	ck_assert_err(decode_with(&h, &l0, NULL), WIRE_OK);
}
END_TEST

START_TEST(test_limit_align_one)
{
	const struct wire_limits l1 = { .max_payload = MAXPAY,
	    .volume_size = 1001, .align = 1 };
	struct wire_hdr h = mkhdr(WIRE_WRITE, 0, 3, 997, 3);

	ck_assert_err(decode_with(&h, &l1, NULL), WIRE_OK);
	h = mkhdr(WIRE_WRITE, 0, 1, 1000, 1);
	ck_assert_err(decode_with(&h, &l1, NULL), WIRE_OK);
	h = mkhdr(WIRE_WRITE, 0, 1, 1001, 1);
	ck_assert_err(decode_with(&h, &l1, NULL), WIRE_ERANGE);
}
END_TEST

START_TEST(test_limit_cr_xfer_index)
{
	/* CR_XFER offset is an extent index: not volume- or align-bound. */
	struct wire_hdr h = mkhdr(WIRE_CR_XFER, 0, 4, UINT64_MAX - 7, 7);

	ck_assert_err(decode(&h), WIRE_OK);
}
END_TEST

START_TEST(test_limit_ack_status)
{
	struct wire_hdr h = mkhdr(WIRE_ACK,
	    WIRE_ACK_FLAGS(WIRE_ACK_RECEIVED, 0xffffff), 0, 0, 0), out;

	ck_assert_err(decode_with(&h, &lim, &out), WIRE_OK);
	ck_assert_uint_eq(WIRE_ACK_KIND(out.flags), WIRE_ACK_RECEIVED);
	ck_assert_uint_eq(WIRE_ACK_STATUS(out.flags), 0xffffff);
}
END_TEST

/* ---- Errors ---- */

START_TEST(test_err_strerror_distinct)
{
	const int codes[] = { WIRE_OK, WIRE_ESHORT, WIRE_EMAGIC,
	    WIRE_EVERSION, WIRE_ETYPE, WIRE_ETOOBIG, WIRE_ERANGE, WIRE_EALIGN,
	    WIRE_EPAYLOAD, WIRE_ELENGTH, WIRE_EFIELD, WIRE_EHELLO, WIRE_ERLE };
	const size_t n = sizeof(codes) / sizeof(codes[0]);

	for (size_t i = 0; i < n; i++) {
		ck_assert_ptr_nonnull(wire_strerror(codes[i]));
		ck_assert_uint_gt(strlen(wire_strerror(codes[i])), 0);
		for (size_t j = i + 1; j < n; j++)
			ck_assert_str_ne(wire_strerror(codes[i]),
			    wire_strerror(codes[j]));
	}
	ck_assert_ptr_nonnull(wire_strerror(-99));
	ck_assert_ptr_nonnull(wire_strerror(7));
	ck_assert_str_eq(wire_type_name(0), "UNKNOWN");
	ck_assert_str_eq(wire_type_name(WIRE_TYPE_MAX + 1), "UNKNOWN");
	ck_assert_str_eq(wire_type_name(WIRE_WRITE), "WRITE");
}
END_TEST

START_TEST(test_err_short)
{
	uint8_t buf[WIRE_HDR_SIZE] = { 0 };
	struct wire_hdr out;

	ck_assert_err(wire_decode_hdr(buf, WIRE_HDR_SIZE - 1, &lim, &out),
	    WIRE_ESHORT);
	ck_assert_err(wire_decode_hdr(buf, 0, &lim, &out), WIRE_ESHORT);
}
END_TEST

START_TEST(test_err_magic)
{
	struct wire_hdr h = valid_hdr(WIRE_PING), out;
	uint8_t buf[WIRE_HDR_SIZE];

	wire_encode_hdr(buf, &h);
	buf[3] = 'X';
	ck_assert_err(wire_decode_hdr(buf, sizeof(buf), &lim, &out),
	    WIRE_EMAGIC);
	/* Big-endian magic is wrong too. */
	wire_encode_hdr(buf, &h);
	buf[0] = 'T'; buf[1] = 'E'; buf[2] = 'U'; buf[3] = 'D';
	ck_assert_err(wire_decode_hdr(buf, sizeof(buf), &lim, &out),
	    WIRE_EMAGIC);
}
END_TEST

START_TEST(test_err_version)
{
	struct wire_hdr h = valid_hdr(WIRE_HELLO);

	h.version = WIRE_VERSION + 1;
	ck_assert_err(decode(&h), WIRE_EVERSION);
	h.version = 0x0100;
	ck_assert_err(decode(&h), WIRE_EVERSION);
}
END_TEST

START_TEST(test_err_type)
{
	struct wire_hdr h = mkhdr(0, 0, 0, 0, 0);

	ck_assert_err(decode(&h), WIRE_ETYPE);
	h.type = 16;
	ck_assert_err(decode(&h), WIRE_ETYPE);
	h.type = 0xffff;
	ck_assert_err(decode(&h), WIRE_ETYPE);
}
END_TEST

START_TEST(test_err_toobig)
{
	struct wire_hdr h = mkhdr(WIRE_WRITE, 0, MAXPAY + ALIGN, 0,
	    MAXPAY + ALIGN);

	ck_assert_err(decode(&h), WIRE_ETOOBIG);
	h = mkhdr(WIRE_GOODBYE, 0, UINT32_MAX, 0, 0);
	ck_assert_err(decode(&h), WIRE_ETOOBIG);
	h = mkhdr(WIRE_CR_XFER, 0, MAXPAY + 4, 0, 1);
	ck_assert_err(decode(&h), WIRE_ETOOBIG);
	h = mkhdr(WIRE_READ_REQ, 0, 0, 0, MAXPAY + ALIGN);
	ck_assert_err(decode(&h), WIRE_ETOOBIG);
	h = mkhdr(WIRE_CSUM_REQ, 0, 0, 0, MAXPAY + ALIGN);
	ck_assert_err(decode(&h), WIRE_ETOOBIG);
}
END_TEST

START_TEST(test_err_range)
{
	struct wire_hdr h = mkhdr(WIRE_WRITE, 0, ALIGN, VOL, ALIGN);

	ck_assert_err(decode(&h), WIRE_ERANGE);
	h = mkhdr(WIRE_TRIM, 0, 0, 0, VOL + ALIGN);
	ck_assert_err(decode(&h), WIRE_ERANGE);
	h = mkhdr(WIRE_READ_REQ, 0, 0, VOL - ALIGN, 2 * ALIGN);
	ck_assert_err(decode(&h), WIRE_ERANGE);
}
END_TEST

START_TEST(test_err_overflow)
{
	/* offset + length wraps to a small number: must not pass. */
	const struct wire_limits huge = { .max_payload = MAXPAY,
	    .volume_size = UINT64_MAX, .align = ALIGN };
	struct wire_hdr h = mkhdr(WIRE_TRIM, 0, 0, UINT64_MAX - ALIGN + 1,
	    2 * ALIGN);

	ck_assert_err(decode(&h), WIRE_ERANGE);
	ck_assert_err(decode_with(&h, &huge, NULL), WIRE_ERANGE);
	h = mkhdr(WIRE_WRITE, 0, ALIGN, UINT64_MAX - ALIGN + 1, ALIGN);
	ck_assert_err(decode_with(&h, &huge, NULL), WIRE_ERANGE);
	h = mkhdr(WIRE_CR_XFER, 0, 4, UINT64_MAX, 2);
	ck_assert_err(decode(&h), WIRE_ERANGE);
}
END_TEST

START_TEST(test_err_align_offset)
{
	struct wire_hdr h = mkhdr(WIRE_WRITE, 0, ALIGN, 512, ALIGN);

	ck_assert_err(decode(&h), WIRE_EALIGN);
	h = mkhdr(WIRE_READ_REQ, 0, 0, 1, ALIGN);
	ck_assert_err(decode(&h), WIRE_EALIGN);
}
END_TEST

START_TEST(test_err_align_length)
{
	struct wire_hdr h = mkhdr(WIRE_WRITE, 0, 512, 0, 512);

	ck_assert_err(decode(&h), WIRE_EALIGN);
	h = mkhdr(WIRE_CSUM_REQ, 0, 0, ALIGN, ALIGN + 1);
	ck_assert_err(decode(&h), WIRE_EALIGN);
}
END_TEST

START_TEST(test_err_payload)
{
	static const unsigned none[] = { WIRE_WRITE_ZEROES, WIRE_TRIM,
	    WIRE_FLUSH, WIRE_ACK, WIRE_READ_REQ, WIRE_CSUM_REQ, WIRE_PING };
	struct wire_hdr h = mkhdr(WIRE_TRIM, 0, 8, 0, ALIGN);

	ck_assert_err(decode(&h), WIRE_EPAYLOAD);
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		h = valid_hdr(none[i]);
		h.plen = 1;
		ck_assert_err(decode(&h), WIRE_EPAYLOAD);
	}
}
END_TEST

START_TEST(test_err_write_plen)
{
	struct wire_hdr h = mkhdr(WIRE_WRITE, 0, 4096, 0, 8192);

	ck_assert_err(decode(&h), WIRE_ELENGTH);
	h = mkhdr(WIRE_WRITE, 0, 0, 0, 4096);
	ck_assert_err(decode(&h), WIRE_ELENGTH);
	h = mkhdr(WIRE_READ_DATA, 0, 8192, 0, 4096);
	ck_assert_err(decode(&h), WIRE_ELENGTH);
	h = mkhdr(WIRE_RESYNC_DATA, 0, 4096, 0, 8192);
	ck_assert_err(decode(&h), WIRE_ELENGTH);
}
END_TEST

START_TEST(test_err_zero_length)
{
	struct wire_hdr h = mkhdr(WIRE_WRITE, 0, 0, 0, 0);

	ck_assert_err(decode(&h), WIRE_ELENGTH);
	h = mkhdr(WIRE_TRIM, 0, 0, 4096, 0);
	ck_assert_err(decode(&h), WIRE_ELENGTH);
	h = mkhdr(WIRE_READ_REQ, 0, 0, 0, 0);
	ck_assert_err(decode(&h), WIRE_ELENGTH);
	h = mkhdr(WIRE_CR_XFER, 0, 4, 0, 0);
	ck_assert_err(decode(&h), WIRE_ELENGTH);
}
END_TEST

START_TEST(test_err_plen_shape)
{
	struct wire_hdr h = mkhdr(WIRE_CSUM_REPLY, 0, 33, 0, 4096);

	ck_assert_err(decode(&h), WIRE_ELENGTH);
	h = mkhdr(WIRE_CSUM_REPLY, 0, 0, 0, 4096);
	ck_assert_err(decode(&h), WIRE_ELENGTH);
	h = mkhdr(WIRE_CR_XFER, 0, 6, 0, 10);
	ck_assert_err(decode(&h), WIRE_ELENGTH);
	h = mkhdr(WIRE_CR_XFER, 0, 0, 0, 10);
	ck_assert_err(decode(&h), WIRE_ELENGTH);
}
END_TEST

START_TEST(test_err_field)
{
	struct wire_hdr h = mkhdr(WIRE_FLUSH, 0, 0, 4096, 0);

	ck_assert_err(decode(&h), WIRE_EFIELD);
	h = mkhdr(WIRE_FLUSH, 0, 0, 0, 4096);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	h = mkhdr(WIRE_PING, 0, 0, 0, 1);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	h = mkhdr(WIRE_PING, 0, 0, 8, 0);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	h = mkhdr(WIRE_ACK, WIRE_ACK_FLAGS(WIRE_ACK_APPLIED, 0), 0, 4096,
	    4096);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	h = mkhdr(WIRE_HELLO, 0, WIRE_HELLO_SIZE, 0, 1);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	/* Unknown ACK kind, flags a type does not have. */
	h = mkhdr(WIRE_ACK, WIRE_ACK_FLAGS(0, 0), 0, 0, 0);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	h = mkhdr(WIRE_ACK, WIRE_ACK_FLAGS(3, 5), 0, 0, 0);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	h = mkhdr(WIRE_TRIM, WIRE_F_FUA, 0, 0, 4096);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	h = mkhdr(WIRE_WRITE, WIRE_F_NO_HOLE, 4096, 0, 4096);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	h = mkhdr(WIRE_PING, WIRE_F_IN_SYNC, 0, 0, 0);
	ck_assert_err(decode(&h), WIRE_OK);
	h = mkhdr(WIRE_PING, 0x0020u, 0, 0, 0);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	h = mkhdr(WIRE_WRITE_ZEROES, WIRE_F_COPY | WIRE_F_NO_HOLE, 0, 0, 4096);
	ck_assert_err(decode(&h), WIRE_OK);
	h = mkhdr(WIRE_TRIM, WIRE_F_COPY, 0, 0, 4096);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	h = mkhdr(WIRE_PING, 0x80000000u, 0, 0, 0);
	ck_assert_err(decode(&h), WIRE_EFIELD);
	/* GOODBYE reason over its bound. */
	h = mkhdr(WIRE_GOODBYE, 0, WIRE_REASON_MAX + 1, 0, 0);
	ck_assert_err(decode(&h), WIRE_EFIELD);
}
END_TEST

START_TEST(test_err_hello_size)
{
	struct wire_hdr h = mkhdr(WIRE_HELLO, 0, WIRE_HELLO_SIZE - 1, 0, 0);
	struct wire_hello in = sample_hello(), out;
	uint8_t buf[WIRE_HELLO_SIZE + 1];

	ck_assert_err(decode(&h), WIRE_EHELLO);
	h = mkhdr(WIRE_HELLO_ACK, 0, WIRE_HELLO_SIZE + 1, 0, 0);
	ck_assert_err(decode(&h), WIRE_EHELLO);
	h = mkhdr(WIRE_HELLO, 0, 0, 0, 0);
	ck_assert_err(decode(&h), WIRE_EHELLO);

	wire_encode_hello(buf, &in);
	buf[WIRE_HELLO_SIZE] = 0;
	ck_assert_err(wire_decode_hello(buf, WIRE_HELLO_SIZE - 1, &out),
	    WIRE_EHELLO);
	ck_assert_err(wire_decode_hello(buf, WIRE_HELLO_SIZE + 1, &out),
	    WIRE_EHELLO);
	ck_assert_err(wire_decode_hello(buf, 0, &out), WIRE_EHELLO);
}
END_TEST

START_TEST(test_err_hello_body)
{
	struct wire_hello in = sample_hello(), out;
	uint8_t buf[WIRE_HELLO_SIZE];
	const size_t reason_off = WIRE_HELLO_SIZE - WIRE_REASON_MAX;

	/* Reason with no NUL in its field. */
	wire_encode_hello(buf, &in);
	memset(buf + reason_off, 'a', WIRE_REASON_MAX);
	ck_assert_err(wire_decode_hello(buf, sizeof(buf), &out), WIRE_EHELLO);
	/* Bytes after the NUL. */
	wire_encode_hello(buf, &in);
	buf[WIRE_HELLO_SIZE - 1] = 'z';
	ck_assert_err(wire_decode_hello(buf, sizeof(buf), &out), WIRE_EHELLO);
	/* Negative status. */
	in.status = -1;
	wire_encode_hello(buf, &in);
	ck_assert_err(wire_decode_hello(buf, sizeof(buf), &out), WIRE_EHELLO);
}
END_TEST

static void
put32le(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Decodes runs given as words; checks bits are untouched on error. */
static int
decode_words(const uint32_t *w, size_t n, uint64_t nbits)
{
	uint8_t buf[64], bits[64];
	int rc;

	ck_assert_uint_le(n * 4, sizeof(buf));
	for (size_t i = 0; i < n; i++)
		put32le(buf + 4 * i, w[i]);
	memset(bits, 0, sizeof(bits));
	rc = wire_decode_runs(buf, n * 4, nbits, bits);
	if (rc != WIRE_OK)
		for (size_t i = 0; i < sizeof(bits); i++)
			ck_assert_uint_eq(bits[i], 0);
	return rc;
}

START_TEST(test_err_rle)
{
	const uint32_t ok[] = { 3, 5, 2 };
	const uint32_t shortsum[] = { 3, 5 };
	const uint32_t longsum[] = { 3, 5, 3 };
	const uint32_t midzero[] = { 3, 0, 7 };
	const uint32_t tailzero[] = { 3, 7, 0 };
	const uint32_t lonezero[] = { 0 };
	const uint32_t twozero[] = { 0, 0, 10 };
	const uint32_t huge[] = { UINT32_MAX, UINT32_MAX, UINT32_MAX };
	const uint32_t split_tail[] = { UINT32_MAX, 0 };
	const uint32_t split_double[] = { UINT32_MAX, 0, 0, 5 };
	uint8_t buf[8] = { 0 }, bits[4] = { 0 };

	ck_assert_err(decode_words(ok, 3, 10), WIRE_OK);
	ck_assert_err(decode_words(shortsum, 2, 10), WIRE_ERLE);
	ck_assert_err(decode_words(longsum, 3, 10), WIRE_ERLE);
	ck_assert_err(decode_words(midzero, 3, 10), WIRE_ERLE);
	ck_assert_err(decode_words(tailzero, 3, 10), WIRE_ERLE);
	ck_assert_err(decode_words(lonezero, 1, 0), WIRE_ERLE);
	ck_assert_err(decode_words(lonezero, 1, 5), WIRE_ERLE);
	ck_assert_err(decode_words(twozero, 3, 10), WIRE_ERLE);
	ck_assert_err(decode_words(huge, 3, 10), WIRE_ERLE);
	ck_assert_err(decode_words(huge, 3, UINT64_C(3) * UINT32_MAX - 1),
	    WIRE_ERLE);
	ck_assert_err(decode_words(split_tail, 2, UINT32_MAX), WIRE_ERLE);
	ck_assert_err(decode_words(split_double, 4,
	    (uint64_t)UINT32_MAX + 5), WIRE_ERLE);
	/* Not a multiple of 4, and nothing at all for a nonempty map. */
	ck_assert_err(wire_decode_runs(buf, 6, 10, bits), WIRE_ERLE);
	ck_assert_err(wire_decode_runs(buf, 3, 0, bits), WIRE_ERLE);
	ck_assert_err(wire_decode_runs(buf, 0, 10, bits), WIRE_ERLE);
}
END_TEST

START_TEST(test_err_rle_cap)
{
	uint8_t bits[4] = { 0x5a, 0x5a, 0x5a, 0x5a }, out[256];
	long n = wire_encode_runs(bits, 32, out, sizeof(out));

	ck_assert_int_gt(n, 0);
	for (size_t cap = 0; cap < (size_t)n; cap++)
		ck_assert_int_eq(wire_encode_runs(bits, 32, out, cap), -1);
}
END_TEST

START_TEST(test_err_untouched)
{
	/* A rejected header leaves the caller's struct alone. */
	struct wire_hdr h = mkhdr(WIRE_WRITE, 0, 0, 0, 0), out, before;

	memset(&out, 0x3c, sizeof(out));
	before = out;
	ck_assert_err(decode_with(&h, &lim, &out), WIRE_ELENGTH);
	ck_assert_mem_eq(&out, &before, sizeof(out));
}
END_TEST

static Suite *
wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *tc;

	tc = tcase_create("Core");
	tcase_add_loop_test(tc, test_roundtrip_type, 1, WIRE_TYPE_MAX + 1);
	tcase_add_test(tc, test_layout);
	tcase_add_test(tc, test_version_zero_encodes_current);
	tcase_add_test(tc, test_hello_roundtrip);
	tcase_add_test(tc, test_hello_long_reason);
	tcase_add_test(tc, test_runs_empty);
	tcase_add_test(tc, test_runs_all_set);
	tcase_add_test(tc, test_runs_all_clear);
	tcase_add_test(tc, test_runs_padding_ignored);
	tcase_add_test(tc, test_runs_random);
	tcase_add_test(tc, test_runs_long);
	tcase_add_test(tc, test_runs_split);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("Limits");
	tcase_add_test(tc, test_limit_short);
	tcase_add_test(tc, test_limit_payload_max);
	tcase_add_test(tc, test_limit_volume_edge);
	tcase_add_test(tc, test_limit_before_hello);
	tcase_add_test(tc, test_limit_align_one);
	tcase_add_test(tc, test_limit_cr_xfer_index);
	tcase_add_test(tc, test_limit_ack_status);
	suite_add_tcase(s, tc);

	tc = tcase_create("Errors");
	tcase_add_test(tc, test_err_strerror_distinct);
	tcase_add_test(tc, test_err_short);
	tcase_add_test(tc, test_err_magic);
	tcase_add_test(tc, test_err_version);
	tcase_add_test(tc, test_err_type);
	tcase_add_test(tc, test_err_toobig);
	tcase_add_test(tc, test_err_range);
	tcase_add_test(tc, test_err_overflow);
	tcase_add_test(tc, test_err_align_offset);
	tcase_add_test(tc, test_err_align_length);
	tcase_add_test(tc, test_err_payload);
	tcase_add_test(tc, test_err_write_plen);
	tcase_add_test(tc, test_err_zero_length);
	tcase_add_test(tc, test_err_plen_shape);
	tcase_add_test(tc, test_err_field);
	tcase_add_test(tc, test_err_hello_size);
	tcase_add_test(tc, test_err_hello_body);
	tcase_add_test(tc, test_err_rle);
	tcase_add_test(tc, test_err_rle_cap);
	tcase_add_test(tc, test_err_untouched);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(wire_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
