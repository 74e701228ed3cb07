/*
 * check_nbd.c: the NBD codec. Core holds the exact bytes of every encoder
 * (hand-written from doc/proto.md, not from the encoder, so a shared
 * misreading cannot pass) and the decoder round trips; Limits the
 * nbd_check_request table and the edges that must still pass; Errors every
 * malformed input, each with its own nbd_err, and every refused encoder
 * argument.
 */
#include <check.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/nbd.h"

#define VOL	(UINT64_C(1) << 30)
#define MIN	512u
#define PREF	4096u
#define MAX	(UINT32_C(1) << 20)

static const struct nbd_limits lim = {
	.export_size = VOL, .min_block = MIN, .pref_block = PREF,
	.max_block = MAX, .structured = 0,
};
static const struct nbd_limits lim_sr = {
	.export_size = VOL, .min_block = MIN, .pref_block = PREF,
	.max_block = MAX, .structured = 1,
};

#define REP_MAGIC 0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9

#define ck_assert_err(got, want) do {					\
	long got_ = (got), want_ = (want);				\
	ck_assert_msg(got_ == want_, "got %ld (%s), want %ld (%s)",	\
	    got_, nbd_strerror((int)got_), want_,			\
	    nbd_strerror((int)want_));					\
} while (0)

/* ---- Core: encoders, byte for byte. ---- */

START_TEST(test_greeting_bytes)
{
	static const uint8_t want[NBD_GREETING_SIZE] = {
		'N', 'B', 'D', 'M', 'A', 'G', 'I', 'C',
		'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T',
		0x00, 0x03,
	};
	uint8_t out[NBD_GREETING_SIZE];

	nbd_encode_greeting(out, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_opt_reply_ack_bytes)
{
	static const uint8_t want[NBD_OPT_REPLY_HDR_SIZE] = {
		REP_MAGIC,
		0x00, 0x00, 0x00, 0x07,		/* NBD_OPT_GO */
		0x00, 0x00, 0x00, 0x01,		/* NBD_REP_ACK */
		0x00, 0x00, 0x00, 0x00,		/* no data */
	};
	uint8_t out[NBD_OPT_REPLY_HDR_SIZE];

	nbd_encode_opt_reply_hdr(out, NBD_OPT_GO, NBD_REP_ACK, 0);
	ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_info_export_bytes)
{
	static const uint8_t want[NBD_REP_INFO_EXPORT_SIZE] = {
		REP_MAGIC,
		0x00, 0x00, 0x00, 0x07,		/* NBD_OPT_GO */
		0x00, 0x00, 0x00, 0x03,		/* NBD_REP_INFO */
		0x00, 0x00, 0x00, 0x0c,		/* length 12 */
		0x00, 0x00,			/* NBD_INFO_EXPORT */
		0x00, 0x00, 0x00, 0x01, 0x40, 0x00, 0x00, 0x00, /* 5 GiB */
		0x0c, 0xed,			/* transmission flags */
	};
	uint8_t out[NBD_REP_INFO_EXPORT_SIZE];

	nbd_encode_info_export(out, NBD_OPT_GO, UINT64_C(5) << 30, 0x0ced);
	ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_info_block_size_bytes)
{
	static const uint8_t want[NBD_REP_INFO_BLOCK_SIZE_SIZE] = {
		REP_MAGIC,
		0x00, 0x00, 0x00, 0x06,		/* NBD_OPT_INFO */
		0x00, 0x00, 0x00, 0x03,		/* NBD_REP_INFO */
		0x00, 0x00, 0x00, 0x0e,		/* length 14 */
		0x00, 0x03,			/* NBD_INFO_BLOCK_SIZE */
		0x00, 0x00, 0x02, 0x00,		/* min 512 */
		0x00, 0x00, 0x10, 0x00,		/* preferred 4096 */
		0x00, 0x10, 0x00, 0x00,		/* max 1 MiB */
	};
	uint8_t out[NBD_REP_INFO_BLOCK_SIZE_SIZE];

	nbd_encode_info_block_size(out, NBD_OPT_INFO, MIN, PREF, MAX);
	ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_info_name_bytes)
{
	static const uint8_t want[] = {
		REP_MAGIC,
		0x00, 0x00, 0x00, 0x07,		/* NBD_OPT_GO */
		0x00, 0x00, 0x00, 0x03,		/* NBD_REP_INFO */
		0x00, 0x00, 0x00, 0x06,		/* 2 + 4 */
		0x00, 0x01,			/* NBD_INFO_NAME */
		'v', 'o', 'l', '0',
	};
	static const uint8_t want_desc[] = {
		REP_MAGIC,
		0x00, 0x00, 0x00, 0x07,
		0x00, 0x00, 0x00, 0x03,
		0x00, 0x00, 0x00, 0x04,		/* 2 + 2 */
		0x00, 0x02,			/* NBD_INFO_DESCRIPTION */
		'h', 'i',
	};
	uint8_t out[64];

	ck_assert_err(nbd_encode_info_name(out, sizeof(out), NBD_OPT_GO,
	    "vol0", 4), sizeof(want));
	ck_assert_mem_eq(out, want, sizeof(want));
	ck_assert_err(nbd_encode_info_description(out, sizeof(out),
	    NBD_OPT_GO, "hi", 2), sizeof(want_desc));
	ck_assert_mem_eq(out, want_desc, sizeof(want_desc));
}
END_TEST

START_TEST(test_rep_server_bytes)
{
	static const uint8_t want[] = {
		REP_MAGIC,
		0x00, 0x00, 0x00, 0x03,		/* NBD_OPT_LIST */
		0x00, 0x00, 0x00, 0x02,		/* NBD_REP_SERVER */
		0x00, 0x00, 0x00, 0x08,		/* 4 + 4 */
		0x00, 0x00, 0x00, 0x04,		/* name length */
		'v', 'o', 'l', '0',
	};
	static const uint8_t want_empty[] = {
		REP_MAGIC,
		0x00, 0x00, 0x00, 0x03,
		0x00, 0x00, 0x00, 0x02,
		0x00, 0x00, 0x00, 0x04,
		0x00, 0x00, 0x00, 0x00,
	};
	uint8_t out[64];

	ck_assert_err(nbd_encode_rep_server(out, sizeof(out), NBD_OPT_LIST,
	    "vol0", 4), sizeof(want));
	ck_assert_mem_eq(out, want, sizeof(want));
	ck_assert_err(nbd_encode_rep_server(out, sizeof(out), NBD_OPT_LIST,
	    "", 0), sizeof(want_empty));
	ck_assert_mem_eq(out, want_empty, sizeof(want_empty));
}
END_TEST

START_TEST(test_rep_err_bytes)
{
	static const uint8_t want[] = {
		REP_MAGIC,
		0x00, 0x00, 0x00, 0x07,		/* NBD_OPT_GO */
		0x80, 0x00, 0x00, 0x06,		/* NBD_REP_ERR_UNKNOWN */
		0x00, 0x00, 0x00, 0x02,
		'n', 'o',
	};
	static const uint8_t want_bare[] = {
		REP_MAGIC,
		0x00, 0x00, 0x00, 0x2a,		/* option 42 */
		0x80, 0x00, 0x00, 0x01,		/* NBD_REP_ERR_UNSUP */
		0x00, 0x00, 0x00, 0x00,
	};
	uint8_t out[64];

	ck_assert_err(nbd_encode_rep_err(out, sizeof(out), NBD_OPT_GO,
	    NBD_REP_ERR_UNKNOWN, "no", 2), sizeof(want));
	ck_assert_mem_eq(out, want, sizeof(want));
	ck_assert_err(nbd_encode_rep_err(out, sizeof(out), 42,
	    NBD_REP_ERR_UNSUP, NULL, 0), sizeof(want_bare));
	ck_assert_mem_eq(out, want_bare, sizeof(want_bare));
}
END_TEST

START_TEST(test_rep_err_values)
{
	/* "2^31 + n", from the spec's list. */
	ck_assert_uint_eq(NBD_REP_ERR_UNSUP, 2147483649u);
	ck_assert_uint_eq(NBD_REP_ERR_POLICY, 2147483650u);
	ck_assert_uint_eq(NBD_REP_ERR_INVALID, 2147483651u);
	ck_assert_uint_eq(NBD_REP_ERR_PLATFORM, 2147483652u);
	ck_assert_uint_eq(NBD_REP_ERR_TLS_REQD, 2147483653u);
	ck_assert_uint_eq(NBD_REP_ERR_UNKNOWN, 2147483654u);
	ck_assert_uint_eq(NBD_REP_ERR_SHUTDOWN, 2147483655u);
	ck_assert_uint_eq(NBD_REP_ERR_BLOCK_SIZE_REQD, 2147483656u);
	ck_assert_uint_eq(NBD_REP_ERR_TOO_BIG, 2147483657u);
	ck_assert_uint_eq(NBD_REPLY_TYPE_ERROR, 32769u);
	ck_assert_uint_eq(NBD_REPLY_TYPE_ERROR_OFFSET, 32770u);
}
END_TEST

START_TEST(test_export_name_reply_zeroes)
{
	uint8_t want[NBD_EXPORT_NAME_REPLY_SIZE] = {
		0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00,	/* 1 GiB */
		0x00, 0x0d,				/* tflags */
		/* 124 zero bytes */
	};
	uint8_t out[NBD_EXPORT_NAME_REPLY_SIZE];

	memset(out, 0xee, sizeof(out));
	ck_assert_uint_eq(nbd_encode_export_name_reply(out, VOL, 0x000d, 0),
	    134);
	ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_export_name_reply_no_zeroes)
{
	static const uint8_t want[10] = {
		0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00,
		0x00, 0x0d,
	};
	uint8_t out[NBD_EXPORT_NAME_REPLY_SIZE];
	size_t i;

	memset(out, 0xee, sizeof(out));
	ck_assert_uint_eq(nbd_encode_export_name_reply(out, VOL, 0x000d, 1),
	    10);
	ck_assert_mem_eq(out, want, sizeof(want));
	for (i = 10; i < sizeof(out); i++)
		ck_assert_uint_eq(out[i], 0xee);	/* nothing beyond */
}
END_TEST

START_TEST(test_simple_reply_bytes)
{
	static const uint8_t want[NBD_SIMPLE_REPLY_SIZE] = {
		0x67, 0x44, 0x66, 0x98,
		0x00, 0x00, 0x00, 0x16,		/* NBD_EINVAL */
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	};
	uint8_t out[NBD_SIMPLE_REPLY_SIZE];

	nbd_encode_simple_reply(out, NBD_EINVAL, UINT64_C(0x0102030405060708));
	ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_chunk_none_bytes)
{
	static const uint8_t want[NBD_CHUNK_HDR_SIZE] = {
		0x66, 0x8e, 0x33, 0xef,
		0x00, 0x01,			/* NBD_REPLY_FLAG_DONE */
		0x00, 0x00,			/* NBD_REPLY_TYPE_NONE */
		0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x00,
	};
	uint8_t out[NBD_CHUNK_HDR_SIZE];

	nbd_encode_chunk_hdr(out, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE,
	    UINT64_C(0xdeadbeef00000001), 0);
	ck_assert_mem_eq(out, want, sizeof(want));
}
END_TEST

START_TEST(test_error_chunk_bytes)
{
	static const uint8_t want[] = {
		0x66, 0x8e, 0x33, 0xef,
		0x00, 0x01,			/* DONE */
		0x80, 0x01,			/* NBD_REPLY_TYPE_ERROR */
		0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
		0x00, 0x00, 0x00, 0x09,		/* 4 + 2 + 3 */
		0x00, 0x00, 0x00, 0x05,		/* NBD_EIO */
		0x00, 0x03,			/* message length */
		'b', 'a', 'd',
	};
	static const uint8_t want_off[] = {
		0x66, 0x8e, 0x33, 0xef,
		0x00, 0x00,
		0x80, 0x02,			/* NBD_REPLY_TYPE_ERROR_OFFSET */
		0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
		0x00, 0x00, 0x00, 0x0e,		/* 4 + 2 + 0 + 8 */
		0x00, 0x00, 0x00, 0x05,
		0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x00,
	};
	uint8_t out[64];

	ck_assert_err(nbd_encode_error_chunk(out, sizeof(out),
	    NBD_REPLY_FLAG_DONE, UINT64_C(0x1122334455667788), NBD_EIO,
	    "bad", 3), sizeof(want));
	ck_assert_mem_eq(out, want, sizeof(want));
	ck_assert_err(nbd_encode_error_offset_chunk(out, sizeof(out), 0,
	    UINT64_C(0x1122334455667788), NBD_EIO, NULL, 0, 0x1200),
	    sizeof(want_off));
	ck_assert_mem_eq(out, want_off, sizeof(want_off));
}
END_TEST

START_TEST(test_offset_chunks_bytes)
{
	static const uint8_t want_data[NBD_OFFSET_DATA_HDR_SIZE] = {
		0x66, 0x8e, 0x33, 0xef,
		0x00, 0x01,
		0x00, 0x01,			/* OFFSET_DATA */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a,
		0x00, 0x00, 0x10, 0x08,		/* 8 + 4096 */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00,
	};
	static const uint8_t want_hole[NBD_OFFSET_HOLE_SIZE] = {
		0x66, 0x8e, 0x33, 0xef,
		0x00, 0x00,
		0x00, 0x02,			/* OFFSET_HOLE */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a,
		0x00, 0x00, 0x00, 0x0c,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00,
		0x00, 0x01, 0x00, 0x00,
	};
	uint8_t out[64];

	ck_assert_err(nbd_encode_offset_data_hdr(out, NBD_REPLY_FLAG_DONE, 42,
	    0x100000, 4096), NBD_OK);
	ck_assert_mem_eq(out, want_data, sizeof(want_data));
	ck_assert_err(nbd_encode_offset_hole(out, 0, 42, 0x200000, 0x10000),
	    NBD_OK);
	ck_assert_mem_eq(out, want_hole, sizeof(want_hole));
}
END_TEST

/* ---- Core: decoders round-trip. ---- */

START_TEST(test_client_flags_roundtrip)
{
	uint8_t buf[NBD_CLIENT_FLAGS_SIZE];
	static const uint8_t want[4] = { 0x00, 0x00, 0x00, 0x03 };
	uint32_t f, out;

	for (f = 0; f < 4; f++) {
		out = 0xffffffff;
		nbd_encode_client_flags(buf, f);
		ck_assert_err(nbd_decode_client_flags(buf, sizeof(buf),
		    NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, &out),
		    NBD_OK);
		ck_assert_uint_eq(out, f);
	}
	ck_assert_mem_eq(buf, want, 4);
	/* Without NO_ZEROES offered, only FIXED_NEWSTYLE (or nothing). */
	nbd_encode_client_flags(buf, NBD_FLAG_C_FIXED_NEWSTYLE);
	ck_assert_err(nbd_decode_client_flags(buf, sizeof(buf),
	    NBD_FLAG_FIXED_NEWSTYLE, &out), NBD_OK);
	ck_assert_uint_eq(out, NBD_FLAG_C_FIXED_NEWSTYLE);
}
END_TEST

START_TEST(test_opt_hdr_roundtrip)
{
	static const uint8_t want[NBD_OPT_HDR_SIZE] = {
		'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T',
		0x00, 0x00, 0x00, 0x07,
		0x00, 0x00, 0x00, 0x0a,
	};
	uint8_t buf[NBD_OPT_HDR_SIZE];
	struct nbd_opt_hdr h;

	nbd_encode_opt_hdr(buf, NBD_OPT_GO, 10);
	ck_assert_mem_eq(buf, want, sizeof(want));
	ck_assert_err(nbd_decode_opt_hdr(buf, sizeof(buf), NBD_OPT_LEN_MAX,
	    &h), NBD_OK);
	ck_assert_uint_eq(h.option, NBD_OPT_GO);
	ck_assert_uint_eq(h.length, 10);

	/* Unknown options decode: they get NBD_REP_ERR_UNSUP, not a close. */
	nbd_encode_opt_hdr(buf, 0xfeedface, 0);
	ck_assert_err(nbd_decode_opt_hdr(buf, sizeof(buf), NBD_OPT_LEN_MAX,
	    &h), NBD_OK);
	ck_assert_uint_eq(h.option, 0xfeedface);
	ck_assert_uint_eq(h.length, 0);
}
END_TEST

START_TEST(test_opt_go_roundtrip)
{
	static const uint8_t want[] = {
		0x00, 0x00, 0x00, 0x04,
		'v', 'o', 'l', '0',
		0x00, 0x03,
		0x00, 0x03, 0x00, 0x01, 0x12, 0x34,
	};
	const uint16_t info[] = { NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME, 0x1234 };
	uint8_t buf[64], again[64];
	struct nbd_opt_export e;
	long n;

	n = nbd_encode_opt_go(buf, sizeof(buf), "vol0", 4, info, 3);
	ck_assert_err(n, sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
	ck_assert_err(nbd_decode_opt_go(buf, (size_t)n, &e), NBD_OK);
	ck_assert_uint_eq(e.name_len, 4);
	ck_assert_mem_eq(e.name, "vol0", 4);
	ck_assert_ptr_eq(e.name, buf + 4);
	ck_assert_uint_eq(e.ninfo, 3);
	ck_assert_uint_eq(nbd_opt_info(&e, 0), NBD_INFO_BLOCK_SIZE);
	ck_assert_uint_eq(nbd_opt_info(&e, 1), NBD_INFO_NAME);
	ck_assert_uint_eq(nbd_opt_info(&e, 2), 0x1234);
	/* reqs: known types only; the unknown 0x1234 is ignored. */
	ck_assert_uint_eq(e.reqs, (1u << NBD_INFO_BLOCK_SIZE) |
	    (1u << NBD_INFO_NAME));

	ck_assert_err(nbd_encode_opt_go(again, sizeof(again),
	    (const char *)e.name, e.name_len, info, e.ninfo), n);
	ck_assert_mem_eq(again, buf, (size_t)n);
}
END_TEST

START_TEST(test_opt_go_empty)
{
	/* The default export, no info requests: 6 bytes of zero. */
	static const uint8_t buf[6] = { 0 };
	struct nbd_opt_export e;

	ck_assert_err(nbd_decode_opt_go(buf, sizeof(buf), &e), NBD_OK);
	ck_assert_uint_eq(e.name_len, 0);
	ck_assert_uint_eq(e.ninfo, 0);
	ck_assert_uint_eq(e.reqs, 0);
}
END_TEST

START_TEST(test_opt_export_name)
{
	static const uint8_t buf[] = { 'v', 'o', 'l', '0' };
	struct nbd_opt_export e;

	ck_assert_err(nbd_decode_opt_export_name(buf, sizeof(buf), &e),
	    NBD_OK);
	ck_assert_uint_eq(e.name_len, 4);
	ck_assert_ptr_eq(e.name, buf);
	ck_assert_uint_eq(e.ninfo, 0);
	ck_assert_uint_eq(e.reqs, 0);
	/* "the length field is zero and no name is specified". */
	ck_assert_err(nbd_decode_opt_export_name(buf, 0, &e), NBD_OK);
	ck_assert_uint_eq(e.name_len, 0);
}
END_TEST

START_TEST(test_request_roundtrip)
{
	static const uint8_t want[NBD_REQUEST_SIZE] = {
		0x25, 0x60, 0x95, 0x13,
		0x00, 0x01,			/* FUA */
		0x00, 0x01,			/* WRITE */
		0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
		0x00, 0x00, 0x20, 0x00,
	};
	struct nbd_request in = {
		.flags = NBD_CMD_FLAG_FUA, .type = NBD_CMD_WRITE,
		.handle = UINT64_C(0xa1a2a3a4a5a6a7a8), .offset = 0x10000,
		.length = 0x2000,
	}, out;
	uint8_t buf[NBD_REQUEST_SIZE];

	nbd_encode_request(buf, &in);
	ck_assert_mem_eq(buf, want, sizeof(want));
	memset(&out, 0x5a, sizeof(out));
	ck_assert_err(nbd_decode_request(want, sizeof(want), &out), NBD_OK);
	ck_assert_uint_eq(out.flags, in.flags);
	ck_assert_uint_eq(out.type, in.type);
	ck_assert_uint_eq(out.handle, in.handle);
	ck_assert_uint_eq(out.offset, in.offset);
	ck_assert_uint_eq(out.length, in.length);
	ck_assert_uint_eq(nbd_request_payload(&out), 0x2000);
	out.type = NBD_CMD_READ;
	ck_assert_uint_eq(nbd_request_payload(&out), 0);
	out.type = NBD_CMD_WRITE_ZEROES;
	ck_assert_uint_eq(nbd_request_payload(&out), 0);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(nbd_cmd_name(NBD_CMD_READ), "READ");
	ck_assert_str_eq(nbd_cmd_name(NBD_CMD_WRITE_ZEROES), "WRITE_ZEROES");
	ck_assert_str_eq(nbd_cmd_name(NBD_CMD_RESIZE), "RESIZE");
	ck_assert_str_eq(nbd_cmd_name(9), "UNKNOWN");
	ck_assert_str_eq(nbd_cmd_name(0xffff), "UNKNOWN");
	ck_assert_str_eq(nbd_opt_name(NBD_OPT_GO), "GO");
	ck_assert_str_eq(nbd_opt_name(NBD_OPT_EXPORT_NAME), "EXPORT_NAME");
	ck_assert_str_eq(nbd_opt_name(NBD_OPT_SET_META_CONTEXT),
	    "SET_META_CONTEXT");
	ck_assert_str_eq(nbd_opt_name(0), "UNKNOWN");
	ck_assert_str_eq(nbd_opt_name(12), "UNKNOWN");
	ck_assert_str_eq(nbd_opt_name(0xffffffffu), "UNKNOWN");
}
END_TEST

START_TEST(test_tflags)
{
	/* HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES,
	 * SEND_CACHE, SEND_FAST_ZERO; SEND_DF with structured replies only. */
	ck_assert_uint_eq(nbd_tflags(&lim), 0x0c6d);
	ck_assert_uint_eq(nbd_tflags(&lim_sr), 0x0ced);
	ck_assert_uint_eq(nbd_tflags(&lim) & NBD_FLAG_READ_ONLY, 0);
}
END_TEST

/* ---- Limits: nbd_check_request. ---- */

struct req_case {
	const char	*name;
	unsigned	 type;
	unsigned	 flags;
	uint64_t	 offset;
	uint32_t	 length;
	int		 structured;
	int		 want;
};

#define FUA	NBD_CMD_FLAG_FUA
#define NOHOLE	NBD_CMD_FLAG_NO_HOLE
#define DF	NBD_CMD_FLAG_DF
#define REQONE	NBD_CMD_FLAG_REQ_ONE
#define FASTZ	NBD_CMD_FLAG_FAST_ZERO
#define PLEN	NBD_CMD_FLAG_PAYLOAD_LEN
#define R	NBD_CMD_READ
#define W	NBD_CMD_WRITE
#define D	NBD_CMD_DISC
#define F	NBD_CMD_FLUSH
#define T	NBD_CMD_TRIM
#define C	NBD_CMD_CACHE
#define WZ	NBD_CMD_WRITE_ZEROES
#define BS	NBD_CMD_BLOCK_STATUS
#define RS	NBD_CMD_RESIZE
#define EINV	NBD_EINVAL
#define ENOSP	NBD_ENOSPC

static const struct req_case req_cases[] = {
	/* Each command, plain and with each flag. */
	{ "read", R, 0, 4096, 4096, 0, 0 },
	{ "read fua", R, FUA, 4096, 4096, 0, 0 },
	{ "read df, simple", R, DF, 0, 4096, 0, EINV },
	{ "read df, structured", R, DF, 0, 4096, 1, 0 },
	{ "read df fua", R, DF | FUA, 0, 4096, 1, 0 },
	{ "read no_hole", R, NOHOLE, 0, 4096, 1, EINV },
	{ "read req_one", R, REQONE, 0, 4096, 1, EINV },
	{ "read fast_zero", R, FASTZ, 0, 4096, 1, EINV },
	{ "read payload_len", R, PLEN, 0, 4096, 1, EINV },
	{ "read bit 6", R, 0x40, 0, 4096, 1, EINV },
	{ "read bit 15", R, 0x8000, 0, 4096, 1, EINV },
	{ "write", W, 0, 0, 4096, 0, 0 },
	{ "write fua", W, FUA, 0, 4096, 0, 0 },
	{ "write no_hole", W, NOHOLE, 0, 4096, 0, EINV },
	{ "write df", W, DF, 0, 4096, 1, EINV },
	{ "write fast_zero", W, FASTZ, 0, 4096, 0, EINV },
	{ "write req_one", W, REQONE, 0, 4096, 0, EINV },
	{ "write payload_len", W, PLEN, 0, 4096, 0, EINV },
	{ "disc", D, 0, 0, 0, 0, 0 },
	{ "disc with junk", D, 0xffff, 123, 77, 1, 0 },
	{ "flush", F, 0, 0, 0, 0, 0 },
	{ "flush fua", F, FUA, 0, 0, 0, 0 },
	{ "flush offset", F, 0, 4096, 0, 0, EINV },
	{ "flush length", F, 0, 0, 4096, 0, EINV },
	{ "flush no_hole", F, NOHOLE, 0, 0, 0, EINV },
	{ "trim", T, 0, 0, 4096, 0, 0 },
	{ "trim fua", T, FUA, 0, 4096, 0, 0 },
	{ "trim no_hole", T, NOHOLE, 0, 4096, 0, EINV },
	{ "trim df", T, DF, 0, 4096, 1, EINV },
	{ "cache", C, 0, 0, 4096, 0, 0 },
	{ "cache fua", C, FUA, 0, 4096, 0, 0 },
	{ "cache df", C, DF, 0, 4096, 1, EINV },
	{ "write_zeroes", WZ, 0, 0, 4096, 0, 0 },
	{ "write_zeroes fua", WZ, FUA, 0, 4096, 0, 0 },
	{ "write_zeroes no_hole", WZ, NOHOLE, 0, 4096, 0, 0 },
	{ "write_zeroes fast_zero", WZ, FASTZ, 0, 4096, 0, 0 },
	{ "write_zeroes all", WZ, FUA | NOHOLE | FASTZ, 0, 4096, 0, 0 },
	{ "write_zeroes df", WZ, DF, 0, 4096, 1, EINV },
	{ "write_zeroes req_one", WZ, REQONE, 0, 4096, 0, EINV },
	{ "block_status", BS, 0, 0, 4096, 1, EINV },
	{ "block_status req_one", BS, REQONE, 0, 4096, 1, EINV },
	{ "resize", RS, 0, 0, 0, 1, EINV },
	{ "unknown 9", 9, 0, 0, 4096, 1, EINV },
	{ "unknown 0xffff", 0xffff, 0, 0, 4096, 1, EINV },

	/* Range. */
	{ "read last block", R, 0, VOL - MIN, MIN, 0, 0 },
	{ "read whole max at end", R, 0, VOL - MAX, MAX, 0, 0 },
	{ "read past end", R, 0, VOL - MIN, 2 * MIN, 0, EINV },
	{ "read at end", R, 0, VOL, MIN, 0, EINV },
	{ "read beyond end", R, 0, VOL * 2, MIN, 0, EINV },
	{ "write last block", W, 0, VOL - MIN, MIN, 0, 0 },
	{ "write past end", W, 0, VOL - MIN, 2 * MIN, 0, ENOSP },
	{ "write at end", W, 0, VOL, MIN, 0, ENOSP },
	{ "write_zeroes past end", WZ, 0, VOL - MIN, 2 * MIN, 0, ENOSP },
	{ "trim past end", T, 0, VOL - MIN, 2 * MIN, 0, EINV },
	{ "cache past end", C, 0, VOL - MIN, 2 * MIN, 0, EINV },

	/* offset + length would wrap: out of range, not in range. */
	{ "read wraps", R, 0, UINT64_MAX - 511, 1024, 0, EINV },
	{ "write wraps", W, 0, UINT64_MAX - 511, 1024, 0, ENOSP },
	{ "trim wraps", T, 0, UINT64_MAX - 511, 1024, 0, EINV },
	{ "write_zeroes wraps", WZ, 0, UINT64_MAX - 511, 1024, 0, ENOSP },

	/* Alignment to min_block (512). */
	{ "read unaligned offset", R, 0, 100, MIN, 0, EINV },
	{ "read unaligned length", R, 0, 0, 100, 0, EINV },
	{ "write unaligned offset", W, 0, MIN + 1, MIN, 0, EINV },
	{ "write unaligned length", W, 0, 0, MIN + 1, 0, EINV },
	{ "trim unaligned", T, 0, 1, MIN, 0, EINV },
	{ "write_zeroes unaligned", WZ, 0, 0, 1, 0, EINV },
	{ "cache unaligned", C, 0, 0, 7, 0, EINV },
	{ "unaligned beats range", W, 0, VOL - 1, MIN, 0, EINV },

	/* Zero length. */
	{ "read zero", R, 0, 0, 0, 0, EINV },
	{ "write zero", W, 0, 0, 0, 0, EINV },
	{ "trim zero", T, 0, 0, 0, 0, EINV },
	{ "cache zero", C, 0, 0, 0, 0, EINV },
	{ "write_zeroes zero", WZ, 0, 0, 0, 0, EINV },

	/* Maximum block size: READ and WRITE only. */
	{ "read max", R, 0, 0, MAX, 0, 0 },
	{ "read over max", R, 0, 0, MAX + MIN, 0, EINV },
	{ "write max", W, 0, 0, MAX, 0, 0 },
	{ "write over max, skippable", W, 0, 0, MAX + MIN, 0, EINV },
	{ "write over max, at 2^25", W, 0, 0, UINT32_C(1) << 25, 0, EINV },
	{ "write just under 2^25", W, 0, 0, (UINT32_C(1) << 25) - MIN, 0,
	    EINV },
	{ "write huge", W, 0, 0, UINT32_MAX - 511, 0, EINV },
	{ "write huge bad flag", W, DF, 0, UINT32_MAX - 511, 0, EINV },
	{ "write huge past end", W, 0, VOL, UINT32_C(1) << 26, 0, EINV },
	{ "read huge: no payload", R, 0, 0, UINT32_MAX - 511, 0, EINV },
	{ "trim over max", T, 0, 0, 64 * MAX, 0, 0 },
	{ "write_zeroes over max", WZ, 0, 0, 64 * MAX, 0, 0 },
	{ "write_zeroes fast over max", WZ, FASTZ, 0, 64 * MAX, 0, 0 },
	{ "cache over max", C, 0, 0, 64 * MAX, 0, 0 },
	{ "write bad flag, small", W, NOHOLE, 0, MAX, 0, EINV },
};

START_TEST(test_check_table)
{
	const struct req_case *c = &req_cases[_i];
	struct nbd_request r = {
		.flags = (uint16_t)c->flags, .type = (uint16_t)c->type,
		.handle = 7, .offset = c->offset, .length = c->length,
	};
	int rc;

	rc = nbd_check_request(&r, c->structured ? &lim_sr : &lim);
	ck_assert_msg(rc == c->want, "%s: got %d, want %d", c->name, rc,
	    c->want);
}
END_TEST

START_TEST(test_check_export_caps_max)
{
	/* max_block unlimited, export 64 MiB: the export is the effective
	 * maximum, so a 128 MiB WRITE is refused. */
	const struct nbd_limits l = {
		.export_size = UINT64_C(1) << 26, .min_block = 1,
		.pref_block = 4096, .max_block = 0xffffffff,
	};
	struct nbd_request r = {
		.type = NBD_CMD_WRITE, .offset = 0, .length = UINT32_C(1) << 27,
	};

	ck_assert_int_eq(nbd_check_request(&r, &l), NBD_ENOSPC);
	r.length = UINT32_C(1) << 26;	/* the whole export: fine */
	ck_assert_int_eq(nbd_check_request(&r, &l), 0);
	/* 4 KiB past the end of a small write: ENOSPC. */
	r.offset = (UINT64_C(1) << 26) - 4096;
	r.length = 8192;
	ck_assert_int_eq(nbd_check_request(&r, &l), NBD_ENOSPC);
}
END_TEST

START_TEST(test_check_byte_granular)
{
	/* min_block 1: any offset; the last byte and the wrap edge. */
	const struct nbd_limits l = {
		.export_size = UINT64_MAX, .min_block = 1, .pref_block = 4096,
		.max_block = 0xffffffff, .structured = 1,
	};
	struct nbd_request r = { .type = NBD_CMD_READ, .length = 1 };

	r.offset = UINT64_MAX - 1;
	ck_assert_int_eq(nbd_check_request(&r, &l), 0);
	r.offset = UINT64_MAX;
	ck_assert_int_eq(nbd_check_request(&r, &l), NBD_EINVAL);
	r.offset = UINT64_MAX - 3;
	r.length = 4;
	ck_assert_int_eq(nbd_check_request(&r, &l), NBD_EINVAL);
	r.length = 3;
	ck_assert_int_eq(nbd_check_request(&r, &l), 0);
	r.offset = 1;
	r.length = 3;
	ck_assert_int_eq(nbd_check_request(&r, &l), 0);
}
END_TEST

START_TEST(test_check_df_overflow)
{
	/* A DF read must fit one OFFSET_DATA chunk: 2^32 - 9 bytes. */
	const struct nbd_limits l = {
		.export_size = UINT64_C(1) << 40, .min_block = 1,
		.pref_block = 4096, .max_block = 0xffffffff, .structured = 1,
	};
	struct nbd_request r = {
		.type = NBD_CMD_READ, .flags = NBD_CMD_FLAG_DF,
		.length = UINT32_MAX - 8,
	};

	ck_assert_int_eq(nbd_check_request(&r, &l), 0);
	r.length = UINT32_MAX - 7;
	ck_assert_int_eq(nbd_check_request(&r, &l), NBD_EOVERFLOW);
	r.length = UINT32_MAX;
	ck_assert_int_eq(nbd_check_request(&r, &l), NBD_EOVERFLOW);
	r.flags = 0;
	ck_assert_int_eq(nbd_check_request(&r, &l), 0);
}
END_TEST

START_TEST(test_check_zero_limits)
{
	/* min 0 is 1, max 0 is "no limit". */
	const struct nbd_limits l = { .export_size = VOL };
	struct nbd_request r = {
		.type = NBD_CMD_WRITE, .offset = 1, .length = UINT32_C(1) << 28,
	};

	ck_assert_int_eq(nbd_check_request(&r, &l), 0);
	r.flags = NBD_CMD_FLAG_DF;
	ck_assert_int_eq(nbd_check_request(&r, &l), NBD_EINVAL);
}
END_TEST

START_TEST(test_limits_check)
{
	struct nbd_limits l = lim;

	ck_assert_err(nbd_limits_check(&lim), NBD_OK);
	l.min_block = 1;
	l.pref_block = 512;
	l.max_block = 0xffffffff;
	ck_assert_err(nbd_limits_check(&l), NBD_OK);
	l.min_block = 65536;
	l.pref_block = 65536;
	l.max_block = 65536 * 3;	/* not a power of 2: allowed */
	ck_assert_err(nbd_limits_check(&l), NBD_OK);
	/* Tiny export: max need only reach the export size. */
	l = lim;
	l.export_size = 1024;
	l.max_block = 1024;
	ck_assert_err(nbd_limits_check(&l), NBD_OK);

	l = lim; l.min_block = 0;
	ck_assert_err(nbd_limits_check(&l), NBD_ELIMITS);
	l = lim; l.min_block = 768;
	ck_assert_err(nbd_limits_check(&l), NBD_ELIMITS);
	l = lim; l.min_block = 131072; l.pref_block = 131072;
	ck_assert_err(nbd_limits_check(&l), NBD_ELIMITS);
	l = lim; l.pref_block = 256;
	ck_assert_err(nbd_limits_check(&l), NBD_ELIMITS);
	l = lim; l.pref_block = 6144;
	ck_assert_err(nbd_limits_check(&l), NBD_ELIMITS);
	l = lim; l.min_block = 8192; l.max_block = 65536;
	ck_assert_err(nbd_limits_check(&l), NBD_ELIMITS);	/* pref < min */
	l = lim; l.max_block = MAX + 1;
	ck_assert_err(nbd_limits_check(&l), NBD_ELIMITS);
	l = lim; l.max_block = 2048;
	ck_assert_err(nbd_limits_check(&l), NBD_ELIMITS);	/* < pref */
	l = lim; l.max_block = 0;
	ck_assert_err(nbd_limits_check(&l), NBD_ELIMITS);
}
END_TEST

START_TEST(test_limit_opt_len)
{
	uint8_t buf[NBD_OPT_HDR_SIZE];
	struct nbd_opt_hdr h;

	nbd_encode_opt_hdr(buf, NBD_OPT_GO, NBD_OPT_LEN_MAX);
	ck_assert_err(nbd_decode_opt_hdr(buf, sizeof(buf), NBD_OPT_LEN_MAX,
	    &h), NBD_OK);
	ck_assert_uint_eq(h.length, NBD_OPT_LEN_MAX);
	nbd_encode_opt_hdr(buf, NBD_OPT_GO, 0);
	ck_assert_err(nbd_decode_opt_hdr(buf, sizeof(buf), 0, &h), NBD_OK);
}
END_TEST

START_TEST(test_limit_string_max)
{
	static uint8_t buf[NBD_OPT_LEN_MAX], out[NBD_OPT_LEN_MAX];
	static char name[NBD_STRING_MAX + 1];
	struct nbd_opt_export e;
	long n;

	memset(name, 'x', sizeof(name));
	n = nbd_encode_opt_go(buf, sizeof(buf), name, NBD_STRING_MAX, NULL, 0);
	ck_assert_err(n, 6 + NBD_STRING_MAX);
	ck_assert_err(nbd_decode_opt_go(buf, (size_t)n, &e), NBD_OK);
	ck_assert_uint_eq(e.name_len, NBD_STRING_MAX);
	ck_assert_err(nbd_decode_opt_export_name((const uint8_t *)name,
	    NBD_STRING_MAX, &e), NBD_OK);
	ck_assert_err(nbd_encode_rep_server(out, sizeof(out), NBD_OPT_LIST,
	    name, NBD_STRING_MAX), NBD_OPT_REPLY_HDR_SIZE + 4 + NBD_STRING_MAX);
	ck_assert_err(nbd_encode_error_chunk(out, sizeof(out), 0, 1,
	    NBD_EIO, name, NBD_STRING_MAX),
	    NBD_CHUNK_HDR_SIZE + 6 + NBD_STRING_MAX);
}
END_TEST

START_TEST(test_limit_exact_cap)
{
	uint8_t out[64];
	const uint16_t info[] = { NBD_INFO_EXPORT };

	ck_assert_err(nbd_encode_rep_server(out, 28, NBD_OPT_LIST, "vol0", 4),
	    28);
	ck_assert_err(nbd_encode_info_name(out, 26, NBD_OPT_GO, "vol0", 4),
	    26);
	ck_assert_err(nbd_encode_rep_err(out, 22, NBD_OPT_GO,
	    NBD_REP_ERR_INVALID, "ab", 2), 22);
	ck_assert_err(nbd_encode_error_chunk(out, 29, 0, 1, NBD_EIO, "abc",
	    3), 29);
	ck_assert_err(nbd_encode_error_offset_chunk(out, 37, 0, 1, NBD_EIO,
	    "abc", 3, 0), 37);
	ck_assert_err(nbd_encode_opt_go(out, 12, "vol0", 4, info, 1), 12);
}
END_TEST

START_TEST(test_limit_offset_data_max)
{
	uint8_t out[NBD_OFFSET_DATA_HDR_SIZE];

	ck_assert_err(nbd_encode_offset_data_hdr(out, 0, 1, 0, 1), NBD_OK);
	ck_assert_uint_eq(out[19], 9);		/* "at least 9" */
	ck_assert_err(nbd_encode_offset_data_hdr(out, 0, 1, 0,
	    UINT32_MAX - 8), NBD_OK);
	ck_assert_uint_eq(out[16], 0xff);
	ck_assert_uint_eq(out[19], 0xff);
}
END_TEST

/* ---- Errors. ---- */

START_TEST(test_err_strerror_distinct)
{
	const int codes[] = { NBD_OK, NBD_ESHORT, NBD_EOPTMAGIC, NBD_EOPTLEN,
	    NBD_EOPTFMT, NBD_ESTRING, NBD_ECFLAGS, NBD_EREQMAGIC, NBD_EBUFSIZE,
	    NBD_EARG, NBD_ELIMITS };
	const size_t n = sizeof(codes) / sizeof(codes[0]);

	for (size_t i = 0; i < n; i++) {
		ck_assert_ptr_nonnull(nbd_strerror(codes[i]));
		ck_assert_uint_gt(strlen(nbd_strerror(codes[i])), 0);
		for (size_t j = i + 1; j < n; j++) {
			ck_assert_int_ne(codes[i], codes[j]);
			ck_assert_str_ne(nbd_strerror(codes[i]),
			    nbd_strerror(codes[j]));
		}
	}
	ck_assert_str_eq(nbd_strerror(-99), "unknown nbd error");
	ck_assert_str_eq(nbd_strerror(NBD_EINVAL), "unknown nbd error");
}
END_TEST

START_TEST(test_err_short)
{
	uint8_t buf[NBD_REQUEST_SIZE];
	struct nbd_request req, keep;
	struct nbd_opt_hdr h;
	uint32_t f = 0x12345678;
	size_t n;

	nbd_encode_client_flags(buf, 0);
	for (n = 0; n < NBD_CLIENT_FLAGS_SIZE; n++)
		ck_assert_err(nbd_decode_client_flags(buf, n, 3, &f),
		    NBD_ESHORT);
	ck_assert_uint_eq(f, 0x12345678);
	nbd_encode_opt_hdr(buf, NBD_OPT_GO, 0);
	for (n = 0; n < NBD_OPT_HDR_SIZE; n++)
		ck_assert_err(nbd_decode_opt_hdr(buf, n, NBD_OPT_LEN_MAX, &h),
		    NBD_ESHORT);

	memset(&req, 0, sizeof(req));
	req.type = NBD_CMD_READ;
	nbd_encode_request(buf, &req);
	memset(&keep, 0x77, sizeof(keep));
	req = keep;
	for (n = 0; n < NBD_REQUEST_SIZE; n++)
		ck_assert_err(nbd_decode_request(buf, n, &req), NBD_ESHORT);
	ck_assert_mem_eq(&req, &keep, sizeof(req));
}
END_TEST

START_TEST(test_err_opt_magic)
{
	uint8_t buf[NBD_OPT_REPLY_HDR_SIZE];
	struct nbd_opt_hdr h;
	size_t i;

	for (i = 0; i < 8; i++) {
		nbd_encode_opt_hdr(buf, NBD_OPT_GO, 0);
		buf[i] ^= 0x20;
		ck_assert_err(nbd_decode_opt_hdr(buf, NBD_OPT_HDR_SIZE,
		    NBD_OPT_LEN_MAX, &h), NBD_EOPTMAGIC);
	}
	/* The option reply magic is not the option magic. */
	nbd_encode_opt_reply_hdr(buf, NBD_OPT_GO, NBD_REP_ACK, 0);
	ck_assert_err(nbd_decode_opt_hdr(buf, NBD_OPT_HDR_SIZE,
	    NBD_OPT_LEN_MAX, &h), NBD_EOPTMAGIC);
	/* Magic checked before length. */
	nbd_encode_opt_hdr(buf, NBD_OPT_GO, UINT32_MAX);
	buf[0] = 0;
	ck_assert_err(nbd_decode_opt_hdr(buf, NBD_OPT_HDR_SIZE,
	    NBD_OPT_LEN_MAX, &h), NBD_EOPTMAGIC);
}
END_TEST

START_TEST(test_err_opt_len)
{
	uint8_t buf[NBD_OPT_HDR_SIZE];
	struct nbd_opt_hdr h = { .option = 99, .length = 99 };

	nbd_encode_opt_hdr(buf, NBD_OPT_GO, NBD_OPT_LEN_MAX + 1);
	ck_assert_err(nbd_decode_opt_hdr(buf, sizeof(buf), NBD_OPT_LEN_MAX,
	    &h), NBD_EOPTLEN);
	nbd_encode_opt_hdr(buf, NBD_OPT_EXPORT_NAME, UINT32_MAX);
	ck_assert_err(nbd_decode_opt_hdr(buf, sizeof(buf), NBD_OPT_LEN_MAX,
	    &h), NBD_EOPTLEN);
	nbd_encode_opt_hdr(buf, NBD_OPT_LIST, 1);
	ck_assert_err(nbd_decode_opt_hdr(buf, sizeof(buf), 0, &h),
	    NBD_EOPTLEN);
	ck_assert_uint_eq(h.option, 99);
	ck_assert_uint_eq(h.length, 99);
}
END_TEST

/* Decodes from an exact-size heap copy, so ASan sees any read past len. */
static int
decode_go_exact(const uint8_t *buf, size_t len, struct nbd_opt_export *e)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);
	int rc;

	ck_assert_ptr_nonnull(copy);
	if (len > 0)
		memcpy(copy, buf, len);
	rc = nbd_decode_opt_go(copy, len, e);
	free(copy);
	return rc;
}

START_TEST(test_err_go_format)
{
	uint8_t buf[64];
	struct nbd_opt_export e, keep;
	const uint16_t info[] = { NBD_INFO_EXPORT, NBD_INFO_BLOCK_SIZE };
	long n;
	size_t len;

	memset(buf, 0, sizeof(buf));
	memset(&keep, 0x3c, sizeof(keep));
	e = keep;
	n = nbd_encode_opt_go(buf, sizeof(buf), "vol0", 4, info, 2);
	ck_assert_err(n, 14);
	len = (size_t)n;

	/* Under the 6-byte minimum. */
	for (size_t k = 0; k < 6; k++)
		ck_assert_err(decode_go_exact(buf, k, &e), NBD_EOPTFMT);
	/* Name length past the end. */
	buf[3] = 9;
	ck_assert_err(decode_go_exact(buf, len, &e), NBD_EOPTFMT);
	/* Name length leaves no room for the count or the requests. */
	for (size_t k = len - 6; k <= len; k++) {
		buf[3] = (uint8_t)k;
		ck_assert_err(decode_go_exact(buf, len, &e), NBD_EOPTFMT);
	}
	buf[0] = 0xff; buf[1] = 0xff; buf[2] = 0xff; buf[3] = 0xff;
	ck_assert_err(decode_go_exact(buf, len, &e), NBD_EOPTFMT);
	buf[0] = 0; buf[1] = 0; buf[2] = 0; buf[3] = 4;
	ck_assert_err(decode_go_exact(buf, len, &e), NBD_OK);
	e = keep;
	/* Count says more requests than the payload holds. */
	buf[9] = 3;
	ck_assert_err(decode_go_exact(buf, len, &e), NBD_EOPTFMT);
	/* Count says fewer: trailing bytes. */
	buf[9] = 1;
	ck_assert_err(decode_go_exact(buf, len, &e), NBD_EOPTFMT);
	buf[8] = 0x80; buf[9] = 0x02;
	ck_assert_err(decode_go_exact(buf, len, &e), NBD_EOPTFMT);
	buf[8] = 0; buf[9] = 2;
	/* An odd trailing byte. */
	ck_assert_err(decode_go_exact(buf, len + 1, &e), NBD_EOPTFMT);
	ck_assert_err(decode_go_exact(buf, len - 1, &e), NBD_EOPTFMT);
	ck_assert_mem_eq(&e, &keep, sizeof(e));
}
END_TEST

START_TEST(test_err_string)
{
	static uint8_t buf[NBD_OPT_LEN_MAX];
	static char name[NBD_STRING_MAX + 1];
	struct nbd_opt_export e;

	memset(name, 'x', sizeof(name));
	/* Over 4096 bytes, framed correctly. */
	buf[0] = 0; buf[1] = 0; buf[2] = 0x10; buf[3] = 0x01;	/* 4097 */
	memcpy(buf + 4, name, NBD_STRING_MAX + 1);
	buf[4 + 4097] = 0;
	buf[4 + 4098] = 0;
	ck_assert_err(nbd_decode_opt_go(buf, 6 + 4097, &e), NBD_ESTRING);
	ck_assert_err(nbd_decode_opt_export_name((const uint8_t *)name,
	    NBD_STRING_MAX + 1, &e), NBD_ESTRING);
	/* A NUL inside the name. */
	ck_assert_err(nbd_encode_opt_go(buf, sizeof(buf), "vol0", 4, NULL, 0),
	    10);
	buf[6] = 0;
	ck_assert_err(nbd_decode_opt_go(buf, 10, &e), NBD_ESTRING);
	ck_assert_err(nbd_decode_opt_export_name((const uint8_t *)"a\0b", 3,
	    &e), NBD_ESTRING);
	/* Encoders refuse the same. */
	ck_assert_err(nbd_encode_opt_go(buf, sizeof(buf), name,
	    NBD_STRING_MAX + 1, NULL, 0), NBD_ESTRING);
	ck_assert_err(nbd_encode_rep_server(buf, sizeof(buf), NBD_OPT_LIST,
	    name, NBD_STRING_MAX + 1), NBD_ESTRING);
	ck_assert_err(nbd_encode_info_name(buf, sizeof(buf), NBD_OPT_GO,
	    "a\0b", 3), NBD_ESTRING);
	ck_assert_err(nbd_encode_info_description(buf, sizeof(buf),
	    NBD_OPT_GO, name, NBD_STRING_MAX + 1), NBD_ESTRING);
	ck_assert_err(nbd_encode_rep_err(buf, sizeof(buf), NBD_OPT_GO,
	    NBD_REP_ERR_INVALID, name, NBD_STRING_MAX + 1), NBD_ESTRING);
	ck_assert_err(nbd_encode_error_chunk(buf, sizeof(buf), 0, 1, NBD_EIO,
	    name, NBD_STRING_MAX + 1), NBD_ESTRING);
	ck_assert_err(nbd_encode_error_offset_chunk(buf, sizeof(buf), 0, 1,
	    NBD_EIO, "a\0", 2, 0), NBD_ESTRING);
}
END_TEST

START_TEST(test_err_client_flags)
{
	uint8_t buf[NBD_CLIENT_FLAGS_SIZE];
	uint32_t f = 77;
	unsigned bit;

	for (bit = 2; bit < 32; bit++) {
		nbd_encode_client_flags(buf, UINT32_C(1) << bit);
		ck_assert_err(nbd_decode_client_flags(buf, sizeof(buf),
		    NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, &f),
		    NBD_ECFLAGS);
	}
	/* NO_ZEROES when the server did not offer it. */
	nbd_encode_client_flags(buf, NBD_FLAG_C_FIXED_NEWSTYLE |
	    NBD_FLAG_C_NO_ZEROES);
	ck_assert_err(nbd_decode_client_flags(buf, sizeof(buf),
	    NBD_FLAG_FIXED_NEWSTYLE, &f), NBD_ECFLAGS);
	ck_assert_uint_eq(f, 77);
}
END_TEST

START_TEST(test_err_request_magic)
{
	static const uint32_t bad[] = {
		0, 0x12560953,			/* historic request magic */
		0x21e41c71,			/* extended request magic */
		NBD_SIMPLE_REPLY_MAGIC, NBD_STRUCTURED_REPLY_MAGIC,
		0x13956025,			/* byte-swapped */
	};
	struct nbd_request req = { .type = NBD_CMD_READ, .length = 512 };
	uint8_t buf[NBD_REQUEST_SIZE];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		nbd_encode_request(buf, &req);
		buf[0] = (uint8_t)(bad[i] >> 24);
		buf[1] = (uint8_t)(bad[i] >> 16);
		buf[2] = (uint8_t)(bad[i] >> 8);
		buf[3] = (uint8_t)bad[i];
		ck_assert_err(nbd_decode_request(buf, sizeof(buf), &req),
		    NBD_EREQMAGIC);
	}
}
END_TEST

START_TEST(test_err_bufsize)
{
	uint8_t out[64];
	const uint16_t info[] = { NBD_INFO_EXPORT };

	memset(out, 0xab, sizeof(out));
	ck_assert_err(nbd_encode_rep_server(out, 27, NBD_OPT_LIST, "vol0", 4),
	    NBD_EBUFSIZE);
	ck_assert_err(nbd_encode_info_name(out, 25, NBD_OPT_GO, "vol0", 4),
	    NBD_EBUFSIZE);
	ck_assert_err(nbd_encode_info_description(out, 0, NBD_OPT_GO, "", 0),
	    NBD_EBUFSIZE);
	ck_assert_err(nbd_encode_rep_err(out, 21, NBD_OPT_GO,
	    NBD_REP_ERR_INVALID, "ab", 2), NBD_EBUFSIZE);
	ck_assert_err(nbd_encode_error_chunk(out, 28, 0, 1, NBD_EIO, "abc",
	    3), NBD_EBUFSIZE);
	ck_assert_err(nbd_encode_error_offset_chunk(out, 36, 0, 1, NBD_EIO,
	    "abc", 3, 0), NBD_EBUFSIZE);
	ck_assert_err(nbd_encode_opt_go(out, 11, "vol0", 4, info, 1),
	    NBD_EBUFSIZE);
	/* Nothing written when refused. */
	for (size_t i = 0; i < sizeof(out); i++)
		ck_assert_uint_eq(out[i], 0xab);
}
END_TEST

START_TEST(test_err_arg)
{
	uint8_t out[64];

	ck_assert_err(nbd_encode_error_chunk(out, sizeof(out), 0, 1, 0, "x",
	    1), NBD_EARG);
	ck_assert_err(nbd_encode_error_offset_chunk(out, sizeof(out), 0, 1, 0,
	    NULL, 0, 0), NBD_EARG);
	ck_assert_err(nbd_encode_rep_err(out, sizeof(out), NBD_OPT_GO,
	    NBD_REP_ACK, NULL, 0), NBD_EARG);
	ck_assert_err(nbd_encode_rep_err(out, sizeof(out), NBD_OPT_GO,
	    NBD_REP_INFO, NULL, 0), NBD_EARG);
	ck_assert_err(nbd_encode_offset_data_hdr(out, 0, 1, 0, 0), NBD_EARG);
	ck_assert_err(nbd_encode_offset_data_hdr(out, 0, 1, 0,
	    UINT32_MAX - 7), NBD_EARG);
	ck_assert_err(nbd_encode_offset_hole(out, 0, 1, 0, 0), NBD_EARG);
}
END_TEST

static Suite *
nbd_suite(void)
{
	Suite *s = suite_create("nbd");
	TCase *tc;

	tc = tcase_create("Core");
	tcase_add_test(tc, test_greeting_bytes);
	tcase_add_test(tc, test_opt_reply_ack_bytes);
	tcase_add_test(tc, test_info_export_bytes);
	tcase_add_test(tc, test_info_block_size_bytes);
	tcase_add_test(tc, test_info_name_bytes);
	tcase_add_test(tc, test_rep_server_bytes);
	tcase_add_test(tc, test_rep_err_bytes);
	tcase_add_test(tc, test_rep_err_values);
	tcase_add_test(tc, test_export_name_reply_zeroes);
	tcase_add_test(tc, test_export_name_reply_no_zeroes);
	tcase_add_test(tc, test_simple_reply_bytes);
	tcase_add_test(tc, test_chunk_none_bytes);
	tcase_add_test(tc, test_error_chunk_bytes);
	tcase_add_test(tc, test_offset_chunks_bytes);
	tcase_add_test(tc, test_client_flags_roundtrip);
	tcase_add_test(tc, test_opt_hdr_roundtrip);
	tcase_add_test(tc, test_opt_go_roundtrip);
	tcase_add_test(tc, test_opt_go_empty);
	tcase_add_test(tc, test_opt_export_name);
	tcase_add_test(tc, test_request_roundtrip);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_tflags);
	suite_add_tcase(s, tc);

	tc = tcase_create("Limits");
	tcase_add_loop_test(tc, test_check_table, 0,
	    (int)(sizeof(req_cases) / sizeof(req_cases[0])));
	tcase_add_test(tc, test_check_export_caps_max);
	tcase_add_test(tc, test_check_byte_granular);
	tcase_add_test(tc, test_check_df_overflow);
	tcase_add_test(tc, test_check_zero_limits);
	tcase_add_test(tc, test_limits_check);
	tcase_add_test(tc, test_limit_opt_len);
	tcase_add_test(tc, test_limit_string_max);
	tcase_add_test(tc, test_limit_exact_cap);
	tcase_add_test(tc, test_limit_offset_data_max);
	suite_add_tcase(s, tc);

	tc = tcase_create("Errors");
	tcase_add_test(tc, test_err_strerror_distinct);
	tcase_add_test(tc, test_err_short);
	tcase_add_test(tc, test_err_opt_magic);
	tcase_add_test(tc, test_err_opt_len);
	tcase_add_test(tc, test_err_go_format);
	tcase_add_test(tc, test_err_string);
	tcase_add_test(tc, test_err_client_flags);
	tcase_add_test(tc, test_err_request_magic);
	tcase_add_test(tc, test_err_bufsize);
	tcase_add_test(tc, test_err_arg);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(nbd_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
