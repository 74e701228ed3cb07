/*
 * check_meta.c: the metadata file (meta.h): the header slot codec, open
 * and create, header and bitmap commits, and recovery from a torn or
 * corrupt header slot or bitmap copy.
 *
 * Every file lives in a per-test directory under one base directory made
 * in the parent ($TMPDIR or /tmp) and removed there after the suite, so a
 * failed assertion (which ends the forked child at once) leaves nothing
 * behind.
 */
#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/meta.h"

#define EXT		65536u
/* 40001 extents: a 5001-byte bitmap, so each copy spans two 4 KiB pages
 * and the last byte is partial. The metadata never touches the data. */
#define NEXT		40001ull
#define VOLSZ		(NEXT * EXT)

#define TMPDIR_PREFIX "duet-meta"
#include "tests/unit/tmpdir.h"

static void
tpath(char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", tdir, name);

	ck_assert(n > 0 && (size_t)n < len);
}

/* ---- helpers ------------------------------------------------------- */

/* FNV-1a 64, as the layout in meta.c specifies for the slot checksum. */
static uint64_t
fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (n-- > 0)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Recomputes the slot checksum after a test edited a field. */
static void
reseal(uint8_t *slot)
{
	uint64_t h = fnv1a(slot, META_SLOT - 8);

	for (int i = 0; i < 8; i++)
		slot[META_SLOT - 8 + i] = (uint8_t)(h >> (8 * i));
}

/* A header with every field set to something other than its default;
 * seed makes headers of different commits tell apart. */
static struct meta
full_meta(uint32_t seed)
{
	struct meta m;

	memset(&m, 0, sizeof(m));
	for (int i = 0; i < META_UUID_LEN; i++)
		m.md_uuid[i] = (uint8_t)(0xa0 + i + seed);
	m.md_size = VOLSZ;
	m.md_extent_size = EXT;
	m.md_gen = 0x1122334455667700ull + seed;
	for (int i = 0; i < META_HISTORY; i++)
		m.md_history[i] = 0xdead0000beef0000ull + 16 * seed + (uint64_t)i;
	m.md_role = seed % 2 ? ROLE_MIRROR : ROLE_PRIMARY;
	m.md_flags = META_F_INCONSISTENT | (seed % 2 ? META_F_PEER_HAS_GEN : 0);
	m.md_al_count = 3 + seed % 5;
	for (uint32_t i = 0; i < m.md_al_count; i++)
		m.md_al[i] = 1000 * seed + 7 * i + 1;
	return m;
}

static void
assert_meta_eq(const struct meta *a, const struct meta *b)
{
	ck_assert_mem_eq(a->md_uuid, b->md_uuid, META_UUID_LEN);
	ck_assert_uint_eq(a->md_size, b->md_size);
	ck_assert_uint_eq(a->md_extent_size, b->md_extent_size);
	ck_assert_uint_eq(a->md_gen, b->md_gen);
	for (int i = 0; i < META_HISTORY; i++)
		ck_assert_uint_eq(a->md_history[i], b->md_history[i]);
	ck_assert_uint_eq(a->md_role, b->md_role);
	ck_assert_uint_eq(a->md_flags, b->md_flags);
	ck_assert_uint_eq(a->md_al_count, b->md_al_count);
	for (uint32_t i = 0; i < a->md_al_count && i < META_AL_MAX; i++)
		ck_assert_uint_eq(a->md_al[i], b->md_al[i]);
}

static uint64_t
bm_bytes(void)
{
	return meta_bitmap_bytes(VOLSZ, EXT);
}

/* Bytes one bitmap copy occupies in the file (rounded up to 4 KiB). */
static uint64_t
bm_span(void)
{
	return (bm_bytes() + 4095) & ~(uint64_t)4095;
}

static uint8_t *
bits_alloc(void)
{
	uint8_t *b = calloc(1, bm_bytes());

	ck_assert_ptr_nonnull(b);
	return b;
}

/* A bit pattern per seed, the last (partial) byte's valid bit included. */
static void
bits_pattern(uint8_t *b, uint32_t seed)
{
	memset(b, 0, bm_bytes());
	for (uint64_t e = seed % 13; e < NEXT; e += 37 + seed)
		b[e / 8] |= (uint8_t)(1u << (e % 8));
	b[(NEXT - 1) / 8] |= (uint8_t)(1u << ((NEXT - 1) % 8));
}

/* Overwrites [off, off+len) of path with pseudo-random garbage. */
static void
scribble(const char *path, uint64_t off, size_t len, uint32_t seed)
{
	uint8_t *g = malloc(len);
	uint32_t x = 0x9e3779b9u ^ seed;
	int fd;

	ck_assert_ptr_nonnull(g);
	for (size_t i = 0; i < len; i++) {
		x = x * 1664525u + 1013904223u;
		g[i] = (uint8_t)(x >> 24);
	}
	ck_assert_int_ge(fd = open(path, O_RDWR), 0);
	ck_assert_int_eq(pwrite(fd, g, len, (off_t)off), (ssize_t)len);
	close(fd);
	free(g);
}

static void
read_slot(const char *path, int slot, uint8_t *buf)
{
	int fd;

	ck_assert_int_ge(fd = open(path, O_RDONLY), 0);
	ck_assert_int_eq(pread(fd, buf, META_SLOT, (off_t)slot * META_SLOT),
	    META_SLOT);
	close(fd);
}

/* Opens path, expecting to load it (rc 0). */
static struct meta_file *
open_ok(const char *path, struct meta *m, uint8_t *bits)
{
	struct meta_file *mf = NULL;
	char err[8192];
	int rc;

	rc = meta_open(path, VOLSZ, EXT, m, bits, &mf, err, sizeof(err));
	ck_assert_msg(rc == 0, "meta_open %s: rc %d: %s", path, rc,
	    rc < 0 ? err : "");
	ck_assert_ptr_nonnull(mf);
	return mf;
}

static struct meta_file *
create_ok(const char *path, struct meta *m, uint8_t *bits)
{
	struct meta_file *mf = NULL;
	char err[8192];
	int rc;

	rc = meta_open(path, VOLSZ, EXT, m, bits, &mf, err, sizeof(err));
	ck_assert_msg(rc == 1, "meta_open %s: rc %d: %s", path, rc,
	    rc < 0 ? err : "");
	ck_assert_ptr_nonnull(mf);
	return mf;
}

static void
write_ok(struct meta_file *mf, const struct meta *m)
{
	char err[8192];

	ck_assert_msg(meta_write(mf, m, err, sizeof(err)) == 0, "%s", err);
}

static void
write_bitmap_ok(struct meta_file *mf, const struct meta *m,
    const uint8_t *bits)
{
	char err[8192];

	ck_assert_msg(meta_write_bitmap(mf, m, bits, err, sizeof(err)) == 0,
	    "%s", err);
}

/* ---- the header slot codec ---------------------------------------- */

START_TEST(encode_decode_round_trip)
{
	struct meta m = full_meta(3), d;
	uint8_t buf[META_SLOT], again[META_SLOT];
	uint64_t counter = 0, sum = 0;
	uint32_t copy = 9;
	char err[256] = "";

	meta_encode(&m, 0x0102030405060708ull, 1, 0xfeedfacecafebeefull, buf);
	memset(&d, 0x5a, sizeof(d));
	ck_assert_msg(meta_decode(buf, &d, &counter, &copy, &sum, err,
	    sizeof(err)) == 0, "%s", err);
	assert_meta_eq(&d, &m);
	ck_assert_uint_eq(counter, 0x0102030405060708ull);
	ck_assert_uint_eq(copy, 1);
	ck_assert_uint_eq(sum, 0xfeedfacecafebeefull);
	ck_assert_int_eq(meta_has_uuid(&d), 1);
	/* Decoding loses nothing: encoding the result gives the same bytes. */
	meta_encode(&d, counter, copy, sum, again);
	ck_assert_mem_eq(again, buf, META_SLOT);

	/* The other copy, counter 0, and all-zero fields round trip too. */
	memset(&m, 0, sizeof(m));
	meta_encode(&m, 0, 0, 0, buf);
	ck_assert_msg(meta_decode(buf, &d, &counter, &copy, &sum, err,
	    sizeof(err)) == 0, "%s", err);
	assert_meta_eq(&d, &m);
	ck_assert_uint_eq(counter, 0);
	ck_assert_uint_eq(copy, 0);
	ck_assert_uint_eq(sum, 0);
	ck_assert_int_eq(meta_has_uuid(&d), 0);
}
END_TEST

START_TEST(encode_decode_full_activity_log)
{
	struct meta m = full_meta(1), d;
	uint8_t buf[META_SLOT];
	uint64_t counter, sum;
	uint32_t copy;
	char err[256] = "";

	m.md_role = ROLE_NONE;
	m.md_al_count = META_AL_MAX;
	for (uint32_t i = 0; i < META_AL_MAX; i++)
		m.md_al[i] = 0xffffffffu - 3 * i;	/* every byte used */
	meta_encode(&m, 42, 0, 7, buf);
	ck_assert_msg(meta_decode(buf, &d, &counter, &copy, &sum, err,
	    sizeof(err)) == 0, "%s", err);
	assert_meta_eq(&d, &m);
	ck_assert_uint_eq(d.md_al[META_AL_MAX - 1], 0xffffffffu -
	    3 * (META_AL_MAX - 1));
}
END_TEST

START_TEST(encode_layout)
{
	struct meta m = full_meta(2);
	uint8_t buf[META_SLOT];

	memset(buf, 0xcc, sizeof(buf));
	meta_encode(&m, 77, 1, 5, buf);
	ck_assert_mem_eq(buf, "DUETMETA", 8);
	ck_assert_uint_eq(get64(buf + 16), 77);			/* counter */
	ck_assert_uint_eq(get64(buf + 40), VOLSZ);		/* size */
	ck_assert_uint_eq(get64(buf + 56), m.md_gen);		/* gen */
	/* The last 8 bytes: FNV-1a 64 of everything before them. */
	ck_assert_uint_eq(get64(buf + META_SLOT - 8),
	    fnv1a(buf, META_SLOT - 8));
	/* Unused bytes are written (zero), not left as they were. */
	ck_assert_uint_eq(buf[META_SLOT - 9], 0);
}
END_TEST

START_TEST(decode_rejects_bad_magic)
{
	struct meta m = full_meta(0), d;
	uint8_t buf[META_SLOT];
	uint64_t counter, sum;
	uint32_t copy;
	char err[256] = "";

	meta_encode(&m, 1, 0, 0, buf);
	buf[3] = 'X';
	reseal(buf);
	ck_assert_int_eq(meta_decode(buf, &d, &counter, &copy, &sum, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "bad magic") != NULL, "%s", err);
	/* A zeroed slot (a fresh file's unused one) is not a header. */
	memset(buf, 0, sizeof(buf));
	err[0] = '\0';
	ck_assert_int_eq(meta_decode(buf, &d, &counter, &copy, &sum, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "bad magic") != NULL, "%s", err);
}
END_TEST

START_TEST(decode_rejects_wrong_version)
{
	struct meta m = full_meta(0), d;
	uint8_t buf[META_SLOT];
	uint64_t counter, sum;
	uint32_t copy;
	char err[256] = "";

	meta_encode(&m, 1, 0, 0, buf);
	put32(buf + 8, 3);
	reseal(buf);	/* intact but for the version */
	ck_assert_int_eq(meta_decode(buf, &d, &counter, &copy, &sum, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "version 3") != NULL, "%s", err);
	/* Version 1 (the old single-record format) is refused as well. */
	put32(buf + 8, 1);
	reseal(buf);
	ck_assert_int_eq(meta_decode(buf, &d, &counter, &copy, &sum, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "version 1") != NULL, "%s", err);
}
END_TEST

START_TEST(decode_rejects_flipped_checksum_byte)
{
	/* A field, an AL entry, the unused tail, the checksum itself. */
	static const size_t at[] = { 16, 24, 56, 100, 112, 4000,
	    META_SLOT - 9, META_SLOT - 8, META_SLOT - 1 };
	struct meta m = full_meta(4), d;
	uint8_t buf[META_SLOT];
	uint64_t counter, sum;
	uint32_t copy;
	char err[256];

	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		meta_encode(&m, 9, 1, 3, buf);
		buf[at[i]] ^= 0x10;
		err[0] = '\0';
		ck_assert_msg(meta_decode(buf, &d, &counter, &copy, &sum, err,
		    sizeof(err)) == -1, "byte %zu flipped: accepted", at[i]);
		ck_assert_msg(strstr(err, "checksum mismatch") != NULL,
		    "byte %zu: %s", at[i], err);
	}
}
END_TEST

START_TEST(decode_rejects_out_of_range)
{
	struct meta m, d;
	uint8_t buf[META_SLOT];
	uint64_t counter, sum;
	uint32_t copy;
	char err[256];

	/* Each one is sealed with a valid checksum: only the range check
	 * can refuse it. */
	m = full_meta(0);
	m.md_role = ROLE_MIRROR + 1;
	meta_encode(&m, 1, 0, 0, buf);
	err[0] = '\0';
	ck_assert_int_eq(meta_decode(buf, &d, &counter, &copy, &sum, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "out of range") != NULL, "role: %s", err);

	m = full_meta(0);
	m.md_al_count = META_AL_MAX + 1;
	meta_encode(&m, 1, 0, 0, buf);
	err[0] = '\0';
	ck_assert_int_eq(meta_decode(buf, &d, &counter, &copy, &sum, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "out of range") != NULL, "al_count: %s",
	    err);

	m = full_meta(0);
	m.md_al_count = 0xffffffffu;
	meta_encode(&m, 1, 0, 0, buf);
	err[0] = '\0';
	ck_assert_int_eq(meta_decode(buf, &d, &counter, &copy, &sum, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "out of range") != NULL, "al_count: %s",
	    err);

	m = full_meta(0);
	meta_encode(&m, 1, 2, 0, buf);		/* bitmap copy 2 */
	err[0] = '\0';
	ck_assert_int_eq(meta_decode(buf, &d, &counter, &copy, &sum, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "out of range") != NULL, "copy: %s", err);
}
END_TEST

START_TEST(bitmap_bytes_one_bit_per_extent)
{
	ck_assert_uint_eq(meta_bitmap_bytes(8ull * EXT, EXT), 1);
	ck_assert_uint_eq(meta_bitmap_bytes(8ull * EXT + 1, EXT), 2);
	ck_assert_uint_eq(meta_bitmap_bytes(9ull * EXT, EXT), 2);
	ck_assert_uint_eq(meta_bitmap_bytes(16ull * EXT, EXT), 2);
	ck_assert_uint_eq(meta_bitmap_bytes(4096, EXT), 1);
	ck_assert_uint_eq(meta_bitmap_bytes(1ull << 40, 4096), (1ull << 28) / 8);
	ck_assert_uint_eq(meta_bitmap_bytes(VOLSZ, EXT), (NEXT + 7) / 8);
}
END_TEST

START_TEST(uuid_and_role_names)
{
	struct meta m;
	char s[37];

	memset(&m, 0, sizeof(m));
	ck_assert_int_eq(meta_has_uuid(&m), 0);
	m.md_uuid[META_UUID_LEN - 1] = 1;
	ck_assert_int_eq(meta_has_uuid(&m), 1);
	for (int i = 0; i < META_UUID_LEN; i++)
		m.md_uuid[i] = (uint8_t)(0x10 * (i % 16) + i);
	meta_uuid_str(m.md_uuid, s);
	ck_assert_str_eq(s, "00112233-4455-6677-8899-aabbccddeeff");
	ck_assert_str_eq(meta_role_name(ROLE_PRIMARY), "primary");
	ck_assert_str_eq(meta_role_name(ROLE_MIRROR), "mirror");
	ck_assert_str_eq(meta_role_name(ROLE_NONE), "none");
}
END_TEST

/* ---- open, create, write ------------------------------------------- */

START_TEST(open_creates_then_loads)
{
	char path[700], tmp[720];
	struct meta m, d;
	struct meta_file *mf;
	uint8_t *bits = bits_alloc(), *zero = bits_alloc();
	struct stat st;

	tpath(path, sizeof(path), "vol.metadata");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	memset(&m, 0x77, sizeof(m));
	memset(bits, 0xff, bm_bytes());
	mf = create_ok(path, &m, bits);
	ck_assert_uint_eq(m.md_size, VOLSZ);
	ck_assert_uint_eq(m.md_extent_size, EXT);
	ck_assert_int_eq(meta_has_uuid(&m), 0);
	ck_assert_uint_eq(m.md_gen, 0);
	for (int i = 0; i < META_HISTORY; i++)
		ck_assert_uint_eq(m.md_history[i], 0);
	ck_assert_uint_eq(m.md_role, ROLE_NONE);
	ck_assert_uint_eq(m.md_flags, META_F_CLEAN);
	ck_assert_uint_eq(m.md_al_count, 0);
	ck_assert_mem_eq(bits, zero, bm_bytes());
	meta_close(mf);
	ck_assert_int_eq(access(tmp, F_OK), -1);	/* renamed into place */
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_ge(st.st_size, (off_t)(2 * META_SLOT + 2 * bm_span()));

	memset(&d, 0x33, sizeof(d));
	memset(bits, 0xff, bm_bytes());
	mf = open_ok(path, &d, bits);
	assert_meta_eq(&d, &m);
	ck_assert_mem_eq(bits, zero, bm_bytes());
	meta_close(mf);
	free(bits);
	free(zero);
}
END_TEST

START_TEST(open_create_fails_naming_the_path)
{
	char path[700], err[8192] = "";
	struct meta m;
	struct meta_file *mf = NULL;
	uint8_t *bits = bits_alloc();

	tpath(path, sizeof(path), "nodir/vol.metadata");
	ck_assert_int_eq(meta_open(path, VOLSZ, EXT, &m, bits, &mf, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, path) != NULL, "%s", err);
	free(bits);
}
END_TEST

START_TEST(open_refuses_other_size)
{
	char path[700], err[8192], want[64];
	struct meta m;
	struct meta_file *mf;
	uint8_t *bits = bits_alloc();
	uint8_t *big = calloc(1, meta_bitmap_bytes(2 * VOLSZ, 4096));

	ck_assert_ptr_nonnull(big);
	tpath(path, sizeof(path), "vol.metadata");
	meta_close(create_ok(path, &m, bits));

	/* Another volume size. */
	err[0] = '\0';
	mf = NULL;
	ck_assert_int_eq(meta_open(path, VOLSZ + EXT, EXT, &m, big, &mf, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, path) != NULL, "%s", err);
	snprintf(want, sizeof(want), "%llu", (unsigned long long)VOLSZ);
	ck_assert_msg(strstr(err, want) != NULL, "no %s: %s", want, err);
	snprintf(want, sizeof(want), "%llu", (unsigned long long)(VOLSZ + EXT));
	ck_assert_msg(strstr(err, want) != NULL, "no %s: %s", want, err);

	/* Another extent size. */
	err[0] = '\0';
	ck_assert_int_eq(meta_open(path, VOLSZ, 4096, &m, big, &mf, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, path) != NULL, "%s", err);
	ck_assert_msg(strstr(err, "65536") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "4096") != NULL, "%s", err);

	/* Refusing did not touch the file. */
	meta_close(open_ok(path, &m, bits));
	free(big);
	free(bits);
}
END_TEST

START_TEST(write_then_reopen)
{
	char path[700];
	struct meta m, w, d;
	struct meta_file *mf;
	uint8_t *bits = bits_alloc(), *zero = bits_alloc();

	tpath(path, sizeof(path), "vol.metadata");
	mf = create_ok(path, &m, bits);
	w = full_meta(1);
	write_ok(mf, &w);
	meta_close(mf);
	mf = open_ok(path, &d, bits);
	assert_meta_eq(&d, &w);
	ck_assert_mem_eq(bits, zero, bm_bytes());

	/* Several more commits through one handle: the last one wins. */
	for (uint32_t s = 2; s <= 6; s++) {
		w = full_meta(s);
		write_ok(mf, &w);
	}
	meta_close(mf);
	mf = open_ok(path, &d, bits);
	assert_meta_eq(&d, &w);
	meta_close(mf);
	free(bits);
	free(zero);
}
END_TEST

START_TEST(write_bitmap_then_reopen)
{
	char path[700];
	struct meta m, w, d;
	struct meta_file *mf;
	uint8_t *bits = bits_alloc(), *want = bits_alloc();

	tpath(path, sizeof(path), "vol.metadata");
	mf = create_ok(path, &m, bits);
	w = full_meta(1);
	bits_pattern(want, 1);
	write_bitmap_ok(mf, &w, want);
	meta_close(mf);

	memset(bits, 0, bm_bytes());
	mf = open_ok(path, &d, bits);
	assert_meta_eq(&d, &w);
	ck_assert_mem_eq(bits, want, bm_bytes());

	/* A header-only commit keeps the bitmap it names. */
	w = full_meta(2);
	write_ok(mf, &w);
	meta_close(mf);
	memset(bits, 0, bm_bytes());
	mf = open_ok(path, &d, bits);
	assert_meta_eq(&d, &w);
	ck_assert_mem_eq(bits, want, bm_bytes());

	/* Bitmap commits alternate copies; each reopen sees the latest. */
	for (uint32_t s = 3; s <= 6; s++) {
		w = full_meta(s);
		bits_pattern(want, s);
		write_bitmap_ok(mf, &w, want);
	}
	meta_close(mf);
	mf = open_ok(path, &d, bits);
	assert_meta_eq(&d, &w);
	ck_assert_mem_eq(bits, want, bm_bytes());

	/* And back to all clear. */
	memset(want, 0, bm_bytes());
	write_bitmap_ok(mf, &w, want);
	meta_close(mf);
	memset(bits, 0xff, bm_bytes());
	meta_close(open_ok(path, &d, bits));
	ck_assert_mem_eq(bits, want, bm_bytes());
	free(bits);
	free(want);
}
END_TEST

/* ---- torn writes and corruption ------------------------------------ */

/*
 * Creates path and commits headers full_meta(1..n) (header only), the
 * last two with bitmaps pattern(n-1), pattern(n) when with_bitmap.
 */
static void
build_history(const char *path, uint32_t n, int with_bitmap)
{
	struct meta m, w;
	struct meta_file *mf;
	uint8_t *bits = bits_alloc();

	meta_close(create_ok(path, &m, bits));
	mf = open_ok(path, &m, bits);
	for (uint32_t s = 1; s <= n; s++) {
		w = full_meta(s);
		if (with_bitmap && s + 1 >= n) {
			bits_pattern(bits, s);
			write_bitmap_ok(mf, &w, bits);
		} else {
			write_ok(mf, &w);
		}
	}
	meta_close(mf);
	free(bits);
}

/*
 * After every commit, header or bitmap, the other slot still holds the
 * header before it: a torn write of the new one can only lose the new
 * one (torn_header_* check the bitmaps). The first commit after creation
 * included.
 */
START_TEST(each_commit_keeps_previous_header)
{
	char path[700], err[256];
	struct meta m, prev, w, d[2];
	struct meta_file *mf;
	uint8_t *bits = bits_alloc();
	uint8_t slot[META_SLOT];
	uint64_t counter[2], sum[2], last = 0;
	uint32_t copy[2];

	tpath(path, sizeof(path), "vol.metadata");
	meta_close(create_ok(path, &m, bits));
	mf = open_ok(path, &prev, bits);
	for (uint32_t s = 1; s <= 6; s++) {
		int ok[2], nw;

		w = full_meta(s);
		if (s % 3 == 0) {
			bits_pattern(bits, s);
			write_bitmap_ok(mf, &w, bits);
		} else {
			write_ok(mf, &w);
		}
		for (int i = 0; i < 2; i++) {
			read_slot(path, i, slot);
			ok[i] = meta_decode(slot, &d[i], &counter[i], &copy[i],
			    &sum[i], err, sizeof(err)) == 0;
		}
		ck_assert_msg(ok[0] && ok[1], "commit %u: slot %d invalid", s,
		    ok[0] ? 1 : 0);
		nw = counter[1] > counter[0];
		ck_assert_msg(counter[nw] > last, "commit %u: counter %llu "
		    "after %llu", s, (unsigned long long)counter[nw],
		    (unsigned long long)last);
		last = counter[nw];
		assert_meta_eq(&d[nw], &w);
		assert_meta_eq(&d[1 - nw], &prev);
		prev = w;
	}
	meta_close(mf);
	free(bits);
}
END_TEST

START_TEST(torn_header_falls_back_to_previous)
{
	char path[700];
	struct meta d, want;
	uint8_t *bits = bits_alloc();
	uint8_t slot[META_SLOT];
	uint64_t gen_seen[2];
	int newest = -1;

	/* Try both slots: garbage over the newest header gives back the
	 * previous one; garbage over the older leaves the newest. */
	for (int s = 0; s < 2; s++) {
		char name[32];

		snprintf(name, sizeof(name), "vol%d.metadata", s);
		tpath(path, sizeof(path), name);
		build_history(path, 5, 0);
		scribble(path, (uint64_t)s * META_SLOT, META_SLOT, 11 + s);
		meta_close(open_ok(path, &d, bits));
		gen_seen[s] = d.md_gen;
		if (d.md_gen == full_meta(4).md_gen) {
			newest = s;
			want = full_meta(4);
		} else {
			want = full_meta(5);
		}
		assert_meta_eq(&d, &want);
	}
	ck_assert_msg(newest >= 0 && gen_seen[1 - newest] == full_meta(5).md_gen,
	    "slot 0 gave gen %llx, slot 1 gave %llx",
	    (unsigned long long)gen_seen[0], (unsigned long long)gen_seen[1]);

	/* After falling back, the next commit lands, and both slots hold
	 * valid headers again (the torn one was the one overwritten). */
	{
		struct meta_file *mf;
		struct meta w = full_meta(9), x;
		uint64_t counter[2], sum;
		uint32_t copy;
		char err[256];
		char name[32];

		snprintf(name, sizeof(name), "vol%d.metadata", newest);
		tpath(path, sizeof(path), name);
		mf = open_ok(path, &d, bits);
		write_ok(mf, &w);
		meta_close(mf);
		meta_close(open_ok(path, &d, bits));
		assert_meta_eq(&d, &w);
		for (int s = 0; s < 2; s++) {
			read_slot(path, s, slot);
			err[0] = '\0';
			ck_assert_msg(meta_decode(slot, &x, &counter[s], &copy,
			    &sum, err, sizeof(err)) == 0, "slot %d: %s", s, err);
		}
		ck_assert_uint_ne(counter[0], counter[1]);
	}
	free(bits);
}
END_TEST

/*
 * After 5 commits (headers 4 and 5 name bitmaps 4 and 5), garbage over
 * [off + i * stride, + len) for i = 0 and 1, one file each: exactly one of
 * the two damages hits what the newest state needs, and the open falls
 * back to header 4 with bitmap 4; the other leaves header 5, bitmap 5.
 */
static void
damage_each_expect_one_fallback(uint64_t off, uint64_t stride, size_t len,
    int seed)
{
	char path[700];
	struct meta d;
	uint8_t *bits = bits_alloc(), *want = bits_alloc();
	int fell_back = 0;

	for (int i = 0; i < 2; i++) {
		struct meta w;
		char name[32];
		int v;

		snprintf(name, sizeof(name), "vol%d.metadata", i);
		tpath(path, sizeof(path), name);
		build_history(path, 5, 1);
		scribble(path, off + (uint64_t)i * stride, len, seed + i);
		meta_close(open_ok(path, &d, bits));
		v = d.md_gen == full_meta(4).md_gen ? 4 : 5;
		fell_back += v == 4;
		w = full_meta(v);
		assert_meta_eq(&d, &w);
		bits_pattern(want, v);
		ck_assert_mem_eq(bits, want, bm_bytes());
	}
	ck_assert_int_eq(fell_back, 1);
	free(bits);
	free(want);
}

/* Losing the newest header must give header 4 with bitmap 4 (its copy is
 * intact). */
START_TEST(torn_header_after_bitmap_commit_keeps_old_bitmap)
{
	damage_each_expect_one_fallback(0, META_SLOT, META_SLOT, 21);
}
END_TEST

/* Garbage over the copy header 5 names gives header 4 with bitmap 4. */
START_TEST(corrupt_bitmap_falls_back_to_older_header)
{
	char path[700];
	struct meta d;
	uint8_t *bits = bits_alloc(), *want = bits_alloc();

	damage_each_expect_one_fallback(2 * (uint64_t)META_SLOT, bm_span(),
	    bm_bytes(), 31);

	/* The file goes on working from there: a bitmap commit after the
	 * fall-back (into the damaged copy) is what the next open sees. */
	for (int c = 0; c < 2; c++) {
		struct meta_file *mf;
		struct meta w = full_meta(7);
		char name[32];

		snprintf(name, sizeof(name), "vol%d.metadata", c);
		tpath(path, sizeof(path), name);
		mf = open_ok(path, &d, bits);
		bits_pattern(want, 7);
		write_bitmap_ok(mf, &w, want);
		meta_close(mf);
		memset(bits, 0, bm_bytes());
		meta_close(open_ok(path, &d, bits));
		assert_meta_eq(&d, &w);
		ck_assert_mem_eq(bits, want, bm_bytes());
	}
	free(bits);
	free(want);
}
END_TEST

START_TEST(corrupt_bitmap_both_headers_name_it)
{
	char path[700], err[8192];
	struct meta m, d, w1 = full_meta(1), w2 = full_meta(2);
	struct meta_file *mf;
	uint8_t *bits = bits_alloc(), *want = bits_alloc();
	int refused = 0;

	/* Bitmap 1 with header 1, then header 2 alone: both headers name
	 * the same copy. Garbage over it leaves no usable header; garbage
	 * over the other (unused) copy changes nothing. */
	for (int c = 0; c < 2; c++) {
		char name[32];

		snprintf(name, sizeof(name), "vol%d.metadata", c);
		tpath(path, sizeof(path), name);
		meta_close(create_ok(path, &m, bits));
		mf = open_ok(path, &m, bits);
		bits_pattern(want, 1);
		write_bitmap_ok(mf, &w1, want);
		write_ok(mf, &w2);
		meta_close(mf);
		scribble(path, 2 * (uint64_t)META_SLOT + c * bm_span(),
		    bm_bytes(), 41 + c);
		err[0] = '\0';
		mf = NULL;
		if (meta_open(path, VOLSZ, EXT, &d, bits, &mf, err,
		    sizeof(err)) == 0) {
			meta_close(mf);
			assert_meta_eq(&d, &w2);
			ck_assert_mem_eq(bits, want, bm_bytes());
			continue;
		}
		refused++;
		ck_assert_msg(strstr(err, path) != NULL, "%s", err);
		ck_assert_msg(strstr(err, "no valid header") != NULL, "%s", err);
		ck_assert_msg(strstr(err, "change record") != NULL,
		    "no reason: %s", err);
	}
	ck_assert_int_eq(refused, 1);
	free(bits);
	free(want);
}
END_TEST

START_TEST(both_slots_garbage_refused)
{
	char path[700], err[8192] = "";
	struct meta m;
	struct meta_file *mf = NULL;
	uint8_t *bits = bits_alloc();

	tpath(path, sizeof(path), "vol.metadata");
	build_history(path, 3, 1);
	scribble(path, 0, 2 * META_SLOT, 51);
	ck_assert_int_eq(meta_open(path, VOLSZ, EXT, &m, bits, &mf, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, path) != NULL, "%s", err);
	ck_assert_msg(strstr(err, "no valid header") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "slot 0") != NULL &&
	    strstr(err, "slot 1") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "bad magic") != NULL, "%s", err);
	/* Refused, not recreated: the file is left for a human. */
	ck_assert_int_eq(meta_open(path, VOLSZ, EXT, &m, bits, &mf, err,
	    sizeof(err)), -1);
	free(bits);
}
END_TEST

START_TEST(both_slots_checksum_bad_refused)
{
	char path[700], err[8192] = "";
	struct meta m;
	struct meta_file *mf = NULL;
	uint8_t *bits = bits_alloc();
	uint8_t one = 0;
	int fd;

	/* One flipped bit in each slot: both fail their checksum. */
	tpath(path, sizeof(path), "vol.metadata");
	build_history(path, 3, 0);
	ck_assert_int_ge(fd = open(path, O_RDWR), 0);
	for (int s = 0; s < 2; s++) {
		off_t at = (off_t)s * META_SLOT + 60;

		ck_assert_int_eq(pread(fd, &one, 1, at), 1);
		one ^= 1;
		ck_assert_int_eq(pwrite(fd, &one, 1, at), 1);
	}
	close(fd);
	ck_assert_int_eq(meta_open(path, VOLSZ, EXT, &m, bits, &mf, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, "no valid header") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "checksum mismatch") != NULL, "%s", err);
	free(bits);
}
END_TEST

START_TEST(truncated_file_refused)
{
	char path[700], err[8192] = "";
	struct meta m;
	struct meta_file *mf = NULL;
	uint8_t *bits = bits_alloc();

	tpath(path, sizeof(path), "vol.metadata");
	build_history(path, 2, 1);
	ck_assert_int_eq(truncate(path, META_SLOT / 2), 0);
	ck_assert_int_eq(meta_open(path, VOLSZ, EXT, &m, bits, &mf, err,
	    sizeof(err)), -1);
	ck_assert_msg(strstr(err, path) != NULL, "%s", err);
	ck_assert_msg(strstr(err, "no valid header") != NULL, "%s", err);
	free(bits);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("meta");
	TCase *codec = tcase_create("Codec");
	TCase *file = tcase_create("File");
	TCase *torn = tcase_create("Torn");
	SRunner *sr;
	int failed;

	tcase_add_test(codec, encode_decode_round_trip);
	tcase_add_test(codec, encode_decode_full_activity_log);
	tcase_add_test(codec, encode_layout);
	tcase_add_test(codec, decode_rejects_bad_magic);
	tcase_add_test(codec, decode_rejects_wrong_version);
	tcase_add_test(codec, decode_rejects_flipped_checksum_byte);
	tcase_add_test(codec, decode_rejects_out_of_range);
	tcase_add_test(codec, bitmap_bytes_one_bit_per_extent);
	tcase_add_test(codec, uuid_and_role_names);
	suite_add_tcase(s, codec);

	tcase_add_unchecked_fixture(file, base_setup, base_teardown);
	tcase_add_checked_fixture(file, test_setup, test_teardown);
	tcase_add_test(file, open_creates_then_loads);
	tcase_add_test(file, open_create_fails_naming_the_path);
	tcase_add_test(file, open_refuses_other_size);
	tcase_add_test(file, write_then_reopen);
	tcase_add_test(file, write_bitmap_then_reopen);
	tcase_set_timeout(file, 30);
	suite_add_tcase(s, file);

	tcase_add_unchecked_fixture(torn, base_setup, base_teardown);
	tcase_add_checked_fixture(torn, test_setup, test_teardown);
	tcase_add_test(torn, each_commit_keeps_previous_header);
	tcase_add_test(torn, torn_header_falls_back_to_previous);
	tcase_add_test(torn, torn_header_after_bitmap_commit_keeps_old_bitmap);
	tcase_add_test(torn, corrupt_bitmap_falls_back_to_older_header);
	tcase_add_test(torn, corrupt_bitmap_both_headers_name_it);
	tcase_add_test(torn, both_slots_garbage_refused);
	tcase_add_test(torn, both_slots_checksum_bad_refused);
	tcase_add_test(torn, truncated_file_refused);
	tcase_set_timeout(torn, 30);
	suite_add_tcase(s, torn);

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
