/*
 * fuzz_nbd.c: libFuzzer target for the NBD codec, the code that sees a local
 * client's bytes first. The top two bits of the first input byte pick a mode:
 *
 *  0  handshake stream: client flags, then options (header + payload) one
 *     after another, as the server would read them, each payload parsed as
 *     GO/INFO and as EXPORT_NAME;
 *  1  transmission stream: the next five bytes make the limits (export size,
 *     block sizes, structured replies; also ones nbd_limits_check refuses),
 *     then requests one after another, WRITE payloads skipped as the server
 *     would, each judged by nbd_check_request against an independent
 *     re-statement of its rules (fuzz_oracle);
 *  2  a GO payload built from the input (random bytes rarely frame one):
 *     encode, decode, compare, corrupt one byte, decode again;
 *  3  the encoders: variable-length ones with input-chosen strings and
 *     capacity, fixed-size ones into exact-size buffers.
 *
 * In modes 0 and 1 a control byte before each message says whether the
 * harness supplies the magic (so the fuzzer need not find it first) or the
 * input does, whether to cut the message short, and whether to fold the
 * option length or the request's offset/length into a plausible range, so
 * that accepted requests and parsed payloads are reached within seconds.
 *
 * Besides "does not crash", it checks what the codec promises: whatever
 * decodes re-encodes to the same bytes; a request nbd_check_request accepts
 * is within the export, aligned, under the maximum and carries only flags
 * nbd_tflags advertises; encoders return the documented length or an error and write
 * exactly what the header says. Payloads are decoded from exact-size heap
 * copies so ASan sees any read past their end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/nbd.h"

static const uint64_t fuzz_sizes[] = {
	0, 512, 4096, UINT64_C(1) << 20, UINT64_C(1) << 30,
	UINT64_C(1) << 40, UINT64_MAX - 4095, UINT64_MAX,
};
static const uint32_t fuzz_max[] = {
	0, 512, 4096, 65536, UINT32_C(1) << 20, UINT32_C(1) << 25,
	UINT32_MAX - 511, UINT32_MAX,
};

static uint8_t *
dup_exact(const uint8_t *p, size_t len)
{
	uint8_t *q = malloc(len > 0 ? len : 1);

	if (q == NULL)
		abort();
	if (len > 0)
		memcpy(q, p, len);
	return q;
}

/* One option payload, parsed both ways. */
static void
fuzz_opt_payload(const uint8_t *p, size_t len)
{
	static uint8_t again[NBD_OPT_LEN_MAX + 16];
	uint16_t info[NBD_OPT_LEN_MAX / 2];
	struct nbd_opt_export e;
	uint8_t *copy = dup_exact(p, len);
	unsigned i;
	long n;
	int rc;

	rc = nbd_decode_opt_go(copy, len, &e);
	if (nbd_strerror(rc) == NULL)
		abort();
	if (rc == NBD_OK) {
		if (e.name_len > NBD_STRING_MAX ||
		    6 + (size_t)e.name_len + 2 * (size_t)e.ninfo != len ||
		    e.name != copy + 4)
			abort();
		for (i = 0; i < e.ninfo; i++) {
			info[i] = nbd_opt_info(&e, i);
			if (info[i] < 32 && !(e.reqs & (UINT32_C(1) << info[i])))
				abort();
		}
		n = nbd_encode_opt_go(again, sizeof(again),
		    (const char *)e.name, e.name_len, info, e.ninfo);
		if (n < 0 || (size_t)n != len || memcmp(again, copy, len) != 0)
			abort();
	} else if (rc != NBD_EOPTFMT && rc != NBD_ESTRING)
		abort();

	rc = nbd_decode_opt_export_name(copy, len, &e);
	if (rc == NBD_OK) {
		if (e.name != copy || e.name_len != len || e.ninfo != 0 ||
		    len > NBD_STRING_MAX || memchr(copy, 0, len) != NULL)
			abort();
		/* The name goes back out in LIST and INFO_NAME replies. */
		n = nbd_encode_rep_server(again, sizeof(again), NBD_OPT_LIST,
		    (const char *)e.name, e.name_len);
		if (n != (long)(NBD_OPT_REPLY_HDR_SIZE + 4 + len) ||
		    memcmp(again + NBD_OPT_REPLY_HDR_SIZE + 4, copy, len) != 0)
			abort();
	} else if (rc != NBD_ESTRING)
		abort();
	free(copy);
}

/*
 * Takes the next message of n bytes from the input into msg, behind the magic
 * (of mlen bytes) unless the control byte asks for the input's own bytes.
 * Returns 0 when the input is exhausted.
 */
static int
fuzz_take(const uint8_t **p, size_t *len, uint8_t *msg, size_t n,
    const uint8_t *magic, size_t mlen, uint8_t *ctl)
{
	if (*len < 1)
		return 0;
	*ctl = (*p)[0];
	(*p)++;
	(*len)--;
	if (*ctl & 1)
		mlen = 0;	/* raw: magic from the input too */
	if (*len < n - mlen)
		return 0;
	memcpy(msg, magic, mlen);
	memcpy(msg + mlen, *p, n - mlen);
	*p += n - mlen;
	*len -= n - mlen;
	return 1;
}

static void
fuzz_handshake(const uint8_t *p, size_t len, uint8_t sel)
{
	static const uint8_t ihaveopt[8] = "IHAVEOPT";
	uint16_t hflags = (sel & 1) ? NBD_FLAG_FIXED_NEWSTYLE |
	    NBD_FLAG_NO_ZEROES : NBD_FLAG_FIXED_NEWSTYLE;
	uint32_t max_len = (sel & 2) ? NBD_OPT_LEN_MAX : 64;
	uint8_t msg[NBD_OPT_HDR_SIZE], again[NBD_OPT_HDR_SIZE], ctl;
	struct nbd_opt_hdr h;
	uint32_t cflags, olen;
	int rc;

	rc = nbd_decode_client_flags(p, len, hflags, &cflags);
	if (rc == NBD_OK) {
		if (cflags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE |
		    ((hflags & NBD_FLAG_NO_ZEROES) ? NBD_FLAG_C_NO_ZEROES : 0)))
			abort();
		nbd_encode_client_flags(again, cflags);
		if (memcmp(again, p, NBD_CLIENT_FLAGS_SIZE) != 0)
			abort();
	} else if (rc != NBD_ESHORT && rc != NBD_ECFLAGS)
		abort();
	if (len < NBD_CLIENT_FLAGS_SIZE)
		return;
	p += NBD_CLIENT_FLAGS_SIZE;
	len -= NBD_CLIENT_FLAGS_SIZE;

	while (fuzz_take(&p, &len, msg, sizeof(msg), ihaveopt, 8, &ctl)) {
		if (ctl & 2) {
			/* A length that fits what is left of the input. */
			olen = ((uint32_t)msg[12] << 8 | msg[15]) %
			    (uint32_t)(len + 1);
			msg[12] = (uint8_t)(olen >> 24);
			msg[13] = (uint8_t)(olen >> 16);
			msg[14] = (uint8_t)(olen >> 8);
			msg[15] = (uint8_t)olen;
		}
		rc = nbd_decode_opt_hdr(msg, (ctl & 4) ? ctl % sizeof(msg) :
		    sizeof(msg), max_len, &h);
		if (rc != NBD_OK) {
			if (rc != NBD_ESHORT && rc != NBD_EOPTMAGIC &&
			    rc != NBD_EOPTLEN)
				abort();
			if (rc != NBD_ESHORT)
				return;		/* the server closes */
			continue;
		}
		if (h.length > max_len || nbd_opt_name(h.option) == NULL)
			abort();
		nbd_encode_opt_hdr(again, h.option, h.length);
		if (memcmp(again, msg, NBD_OPT_HDR_SIZE) != 0)
			abort();
		if (len < h.length)
			return;
		fuzz_opt_payload(p, h.length);
		p += h.length;
		len -= h.length;
	}
}

/*
 * The rules of nbd.c written out again, independently: 128-bit arithmetic for
 * the range, a flag table per command. Returns the errno nbd_check_request
 * must give.
 */
static int
fuzz_oracle(const struct nbd_request *r, const struct nbd_limits *lim)
{
	unsigned __int128 end = (unsigned __int128)r->offset + r->length;
	uint32_t min = lim->min_block != 0 ? lim->min_block : 1;
	uint32_t max = lim->max_block != 0 ? lim->max_block : UINT32_MAX;
	uint16_t ok;
	int wr = r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES;

	switch (r->type) {
	case NBD_CMD_DISC:
		return 0;
	case NBD_CMD_READ:
		ok = NBD_CMD_FLAG_FUA | (lim->structured ? NBD_CMD_FLAG_DF : 0);
		break;
	case NBD_CMD_WRITE_ZEROES:
		ok = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
		    NBD_CMD_FLAG_FAST_ZERO;
		break;
	case NBD_CMD_WRITE:
	case NBD_CMD_FLUSH:
	case NBD_CMD_TRIM:
	case NBD_CMD_CACHE:
		ok = NBD_CMD_FLAG_FUA;
		break;
	default:
		return NBD_EINVAL;
	}
	if (r->flags & ~ok)
		return NBD_EINVAL;
	if (r->type == NBD_CMD_FLUSH)
		return (r->offset | r->length) != 0 ? NBD_EINVAL : 0;
	if (r->length == 0 || r->offset % min || r->length % min)
		return NBD_EINVAL;
	if (r->length > max && (r->type == NBD_CMD_READ ||
	    r->type == NBD_CMD_WRITE))
		return NBD_EINVAL;
	if (end > lim->export_size)
		return wr ? NBD_ENOSPC : NBD_EINVAL;
	if ((r->flags & NBD_CMD_FLAG_DF) && (uint64_t)r->length + 8 > UINT32_MAX)
		return NBD_EOVERFLOW;
	return 0;
}

/* What an accepted request must satisfy; rules as in nbd.c. */
static void
fuzz_check_one(const struct nbd_request *r, const struct nbd_limits *lim)
{
	uint32_t min = lim->min_block != 0 ? lim->min_block : 1;
	uint32_t max = lim->max_block != 0 ? lim->max_block : UINT32_MAX;
	uint16_t tf = nbd_tflags(lim);
	int rc;

	rc = nbd_check_request(r, lim);
	if (rc != fuzz_oracle(r, lim))
		abort();
	if (nbd_cmd_name(r->type) == NULL)
		abort();
	if (r->type == NBD_CMD_DISC) {
		if (rc != 0)
			abort();
		return;
	}
	switch (rc) {
	case 0:
		break;
	case NBD_EINVAL:
		return;
	case NBD_ENOSPC:
		if (r->type != NBD_CMD_WRITE &&
		    r->type != NBD_CMD_WRITE_ZEROES)
			abort();
		return;
	case NBD_EOVERFLOW:
		if (!(r->flags & NBD_CMD_FLAG_DF))
			abort();
		return;
	default:
		abort();
	}

	/* Accepted. */
	switch (r->type) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
	case NBD_CMD_FLUSH:
	case NBD_CMD_TRIM:
	case NBD_CMD_CACHE:
	case NBD_CMD_WRITE_ZEROES:
		break;
	default:
		abort();
	}
	if ((r->flags & NBD_CMD_FLAG_FUA) && !(tf & NBD_FLAG_SEND_FUA))
		abort();
	if ((r->flags & NBD_CMD_FLAG_DF) && (!(tf & NBD_FLAG_SEND_DF) ||
	    !lim->structured || r->type != NBD_CMD_READ ||
	    r->length > UINT32_MAX - 8))
		abort();
	if ((r->flags & NBD_CMD_FLAG_FAST_ZERO) &&
	    (!(tf & NBD_FLAG_SEND_FAST_ZERO) ||
	    r->type != NBD_CMD_WRITE_ZEROES))
		abort();
	if ((r->flags & NBD_CMD_FLAG_NO_HOLE) &&
	    r->type != NBD_CMD_WRITE_ZEROES)
		abort();
	if (r->flags & ~(uint16_t)(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF |
	    NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE))
		abort();
	if (r->type == NBD_CMD_FLUSH) {
		if (r->offset != 0 || r->length != 0 ||
		    !(tf & NBD_FLAG_SEND_FLUSH))
			abort();
		return;
	}
	if (r->length == 0 || r->offset % min != 0 || r->length % min != 0)
		abort();
	if (r->offset > lim->export_size ||
	    r->offset + r->length < r->offset ||
	    r->offset + r->length > lim->export_size)
		abort();
	if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) &&
	    r->length > max)
		abort();
	if ((r->type == NBD_CMD_TRIM && !(tf & NBD_FLAG_SEND_TRIM)) ||
	    (r->type == NBD_CMD_WRITE_ZEROES &&
	    !(tf & NBD_FLAG_SEND_WRITE_ZEROES)) ||
	    (r->type == NBD_CMD_CACHE && !(tf & NBD_FLAG_SEND_CACHE)))
		abort();
}

static void
fuzz_transmission(const uint8_t *p, size_t len)
{
	static const uint8_t magic[4] = { 0x25, 0x60, 0x95, 0x13 };
	struct nbd_limits lim;
	struct nbd_request r, r2;
	uint8_t msg[NBD_REQUEST_SIZE], again[NBD_REQUEST_SIZE], ctl;
	uint32_t skip, min, max;
	int rc;

	if (len < 5)
		return;
	lim.export_size = fuzz_sizes[p[0] & 7];
	if (p[0] & 0x08)
		lim.export_size -= lim.export_size > 0 ? p[4] : 0;
	lim.min_block = (p[1] & 0x1f) < 18 ? UINT32_C(1) << (p[1] & 0x1f) :
	    (uint32_t)(p[1] & 0x1f) * 3;	/* some not powers of 2 */
	lim.pref_block = UINT32_C(1) << (p[2] & 0x1f);
	lim.max_block = fuzz_max[p[3] & 7];
	lim.structured = (p[3] >> 3) & 1;
	if (p[1] & 0x80)
		lim.min_block = 0;
	(void)nbd_limits_check(&lim);
	min = lim.min_block != 0 ? lim.min_block : 1;
	max = lim.max_block != 0 ? lim.max_block : UINT32_MAX;
	p += 5;
	len -= 5;

	while (fuzz_take(&p, &len, msg, sizeof(msg), magic, 4, &ctl)) {
		rc = nbd_decode_request(msg, (ctl & 8) ? ctl % sizeof(msg) :
		    sizeof(msg), &r);
		if (rc == NBD_ESHORT)
			continue;
		if (rc != NBD_OK) {
			if (rc != NBD_EREQMAGIC)
				abort();
			return;			/* the server closes */
		}
		nbd_encode_request(again, &r);
		if (memcmp(again, msg, NBD_REQUEST_SIZE) != 0)
			abort();
		if (nbd_decode_request(again, sizeof(again), &r2) != NBD_OK ||
		    r2.flags != r.flags || r2.type != r.type ||
		    r2.handle != r.handle || r2.offset != r.offset ||
		    r2.length != r.length)
			abort();
		if (nbd_request_payload(&r) !=
		    (r.type == NBD_CMD_WRITE ? r.length : 0))
			abort();
		if (ctl & 2) {
			/* Mostly-plausible: a known command, in range. */
			r.type %= 8;
			r.flags &= 0x1f;
			r.offset %= lim.export_size + 1 != 0 ?
			    lim.export_size + 1 : UINT64_MAX;
			r.length = (uint32_t)(r.length % ((ctl & 4) ?
			    (uint64_t)max * 4 / 3 + 1 : (uint64_t)max + 1));
			if (ctl & 0x10) {
				r.offset -= r.offset % min;
				r.length -= r.length % min;
			}
		}
		fuzz_check_one(&r, &lim);
		if (r.type == NBD_CMD_DISC)
			return;
		/* Refused or not, the payload is read past. */
		skip = nbd_request_payload(&r);
		if (len < skip)
			return;
		p += skip;
		len -= skip;
	}
}

/* A GO payload framed from the input: name length byte, info count byte. */
static void
fuzz_go_struct(const uint8_t *p, size_t len)
{
	static uint8_t enc[NBD_OPT_LEN_MAX];
	uint16_t info[64];
	struct nbd_opt_export e;
	size_t name_len, at;
	unsigned ninfo, i;
	long n;

	if (len < 4)
		return;
	at = (size_t)p[0] | (size_t)p[1] << 8;
	ninfo = p[2] % 64;
	name_len = p[3];
	p += 4;
	len -= 4;
	if (name_len > len)
		name_len = len;
	for (i = 0; i < ninfo; i++)
		info[i] = (uint16_t)(i < len ? p[len - 1 - i] % 6 : i);
	n = nbd_encode_opt_go(enc, sizeof(enc), (const char *)p, name_len,
	    info, (uint16_t)ninfo);
	if (memchr(p, 0, name_len) != NULL) {
		if (n != NBD_ESTRING)
			abort();
		return;
	}
	if (n != (long)(6 + name_len + 2 * ninfo))
		abort();
	if (nbd_decode_opt_go(enc, (size_t)n, &e) != NBD_OK ||
	    e.name_len != name_len || memcmp(e.name, p, name_len) != 0 ||
	    e.ninfo != ninfo)
		abort();
	for (i = 0; i < ninfo; i++)
		if (nbd_opt_info(&e, i) != info[i])
			abort();
	enc[at % (size_t)n] ^= (uint8_t)(1u << (at >> 13));
	fuzz_opt_payload(enc, (size_t)n);
	/* And cut short. */
	fuzz_opt_payload(enc, (size_t)n - 1 - at % (size_t)n);
}

/* Variable-length encoders: the length they return is what they wrote. */
static void
fuzz_encoders(const uint8_t *p, size_t len)
{
	static uint8_t out[NBD_STRING_MAX + 64];
	size_t cap, slen, want;
	uint32_t error;
	const char *s;
	long n;
	int nul;

	if (len < 6)
		return;
	cap = ((size_t)p[0] | (size_t)p[1] << 8) % sizeof(out);
	error = p[2];
	s = (const char *)p + 3;
	slen = len - 3;
	nul = memchr(s, 0, slen) != NULL;

	want = NBD_OPT_REPLY_HDR_SIZE + 4 + slen;
	n = nbd_encode_rep_server(out, cap, NBD_OPT_LIST, s, slen);
	if ((slen > NBD_STRING_MAX || nul) ? n != NBD_ESTRING :
	    cap < want ? n != NBD_EBUFSIZE : n != (long)want)
		abort();
	if (n > 0 && (out[19] != (uint8_t)(slen + 4) ||
	    memcmp(out + 24, s, slen) != 0))
		abort();

	want = NBD_OPT_REPLY_HDR_SIZE + 2 + slen;
	n = nbd_encode_info_name(out, cap, NBD_OPT_GO, s, slen);
	if ((slen > NBD_STRING_MAX || nul) ? n != NBD_ESTRING :
	    cap < want ? n != NBD_EBUFSIZE : n != (long)want)
		abort();

	want = NBD_OPT_REPLY_HDR_SIZE + slen;
	n = nbd_encode_rep_err(out, cap, NBD_OPT_GO,
	    NBD_REP_FLAG_ERROR | p[2], s, slen);
	if ((slen > NBD_STRING_MAX || nul) ? n != NBD_ESTRING :
	    cap < want ? n != NBD_EBUFSIZE : n != (long)want)
		abort();

	want = NBD_CHUNK_HDR_SIZE + 6 + slen + 8;
	n = nbd_encode_error_offset_chunk(out, cap, NBD_REPLY_FLAG_DONE, 1,
	    error, s, slen, UINT64_MAX);
	if (error == 0 ? n != NBD_EARG : (slen > NBD_STRING_MAX || nul) ?
	    n != NBD_ESTRING : cap < want ? n != NBD_EBUFSIZE :
	    n != (long)want)
		abort();
	if (n > 0 && (out[n - 1] != 0xff || out[25] != (uint8_t)slen ||
	    (size_t)((out[16] << 24 | out[17] << 16 | out[18] << 8 |
	    out[19]) + NBD_CHUNK_HDR_SIZE) != want))
		abort();

	want = NBD_OPT_REPLY_HDR_SIZE + 2 + slen;
	n = nbd_encode_info_description(out, cap, NBD_OPT_INFO, s, slen);
	if ((slen > NBD_STRING_MAX || nul) ? n != NBD_ESTRING :
	    cap < want ? n != NBD_EBUFSIZE : n != (long)want)
		abort();
	want = NBD_CHUNK_HDR_SIZE + 6 + slen;
	n = nbd_encode_error_chunk(out, cap, 0, 2, error, s, slen);
	if (error == 0 ? n != NBD_EARG : (slen > NBD_STRING_MAX || nul) ?
	    n != NBD_ESTRING : cap < want ? n != NBD_EBUFSIZE :
	    n != (long)want)
		abort();
}

static uint64_t
get64be(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Fixed-size encoders into exact-size heap buffers; fields read back. */
static void
fuzz_fixed(const uint8_t *p, size_t len)
{
	uint64_t a, b;
	uint32_t w;
	uint8_t *out;
	size_t n;

	if (len < 20)
		return;
	a = get64be(p);
	b = get64be(p + 8);
	w = (uint32_t)(b >> 32);

	out = malloc(NBD_EXPORT_NAME_REPLY_SIZE);
	n = nbd_encode_export_name_reply(out, a, (uint16_t)b, p[16] & 1);
	if (n != ((p[16] & 1) ? 10u : 134u) || get64be(out) != a ||
	    out[8] != (uint8_t)(b >> 8) || out[9] != (uint8_t)b ||
	    (n == 134 && (out[10] != 0 || out[133] != 0)))
		abort();
	free(out);

	out = malloc(NBD_REP_INFO_EXPORT_SIZE);
	nbd_encode_info_export(out, NBD_OPT_GO, a, (uint16_t)b);
	if (get64be(out + 22) != a || out[31] != (uint8_t)b)
		abort();
	free(out);

	out = malloc(NBD_REP_INFO_BLOCK_SIZE_SIZE);
	nbd_encode_info_block_size(out, NBD_OPT_GO, (uint32_t)a,
	    (uint32_t)(a >> 32), w);
	if (out[33] != (uint8_t)w || out[25] != (uint8_t)a)
		abort();
	free(out);

	out = malloc(NBD_OFFSET_DATA_HDR_SIZE);
	if (nbd_encode_offset_data_hdr(out, 0, b, a, w) !=
	    ((w == 0 || w > UINT32_MAX - 8) ? NBD_EARG : NBD_OK))
		abort();
	free(out);

	out = malloc(NBD_OFFSET_HOLE_SIZE);
	if (nbd_encode_offset_hole(out, 0, b, a, w) !=
	    (w == 0 ? NBD_EARG : NBD_OK))
		abort();
	free(out);

	out = malloc(NBD_SIMPLE_REPLY_SIZE);
	nbd_encode_simple_reply(out, w, b);
	if (get64be(out + 8) != b)
		abort();
	free(out);

	out = malloc(NBD_GREETING_SIZE);
	nbd_encode_greeting(out, (uint16_t)w);
	if (memcmp(out, "NBDMAGICIHAVEOPT", 16) != 0)
		abort();
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	if (size < 1)
		return 0;
	switch (data[0] >> 6) {
	case 0:
		fuzz_handshake(data + 1, size - 1, data[0]);
		break;
	case 1:
		fuzz_transmission(data + 1, size - 1);
		break;
	case 2:
		fuzz_go_struct(data + 1, size - 1);
		break;
	case 3:
		fuzz_encoders(data + 1, size - 1);
		fuzz_fixed(data + 1, size - 1);
		break;
	}

	/* The payload decoders alone, on the raw bytes. */
	if (size - 1 <= NBD_OPT_LEN_MAX)
		fuzz_opt_payload(data + 1, size - 1);
	copy = dup_exact(data, size);
	(void)nbd_decode_request(copy, size, &(struct nbd_request){ 0 });
	free(copy);
	return 0;
}
