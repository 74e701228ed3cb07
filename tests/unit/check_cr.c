/*
 * check_cr.c: the change record and the activity log (cr.h) over a real
 * metadata file: bit counting, merge, save and clean close, and the crash
 * invariant: after an unclean stop, the recorded bits plus every extent of
 * every hot AL extent are marked, and nothing else.
 *
 * A crash is simulated with cr_close(c, 0): it writes nothing, so the file
 * holds exactly what the last commit left. The volume itself is never
 * touched (the metadata is only a bitmap), so a 4 GiB volume costs a few
 * KiB of file.
 *
 * Files live in a per-test directory under one base directory made in the
 * parent ($TMPDIR or /tmp) and removed there after the suite.
 */
#include <check.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "common/cr.h"
#include "common/util.h"

#define EXT	65536u
#define ALX	((uint64_t)META_AL_EXTENT)
#define PER_AL	(META_AL_EXTENT / EXT)		/* extents per AL extent: 64 */

#define TMPDIR_PREFIX "duet-cr"
#include "tests/unit/tmpdir.h"

/* ---- helpers ------------------------------------------------------- */

static struct config CFG;

static void
cfg_init(uint64_t vol_size, uint32_t al_extents)
{
	int n;

	memset(&CFG, 0, sizeof(CFG));
	snprintf(CFG.vol_name, sizeof(CFG.vol_name), "test");
	CFG.vol_size = vol_size;
	CFG.extent_size = EXT;
	CFG.al_extents = al_extents;
	n = snprintf(CFG.vol_metadata, sizeof(CFG.vol_metadata),
	    "%s/volume.metadata", tdir);
	ck_assert(n > 0 && (size_t)n < sizeof(CFG.vol_metadata));
}

static void
open_expect(struct cr *c, int want)
{
	char err[8192] = "";
	int rc = cr_open(c, &CFG, err, sizeof(err));

	ck_assert_msg(rc == want, "cr_open: rc %d, want %d: %s", rc, want, err);
}

/* An unclean stop and a restart. */
static void
crash_reopen(struct cr *c)
{
	cr_close(c, 0);
	open_expect(c, 0);
}

static void
clean_reopen(struct cr *c)
{
	ck_assert_int_eq(cr_close(c, 1), 0);
	open_expect(c, 0);
}

static uint64_t
count_bits(const struct cr *c)
{
	uint64_t n = 0;

	for (uint64_t e = 0; e < c->c_nbits; e++)
		n += cr_test(c, e);
	return n;
}

/* Checks that exactly the extents want() says are marked. */
static void
assert_marked(const struct cr *c, int (*want)(uint64_t ext))
{
	uint64_t n = 0;

	for (uint64_t e = 0; e < c->c_nbits; e++) {
		ck_assert_msg(cr_test(c, e) == want(e),
		    "extent %llu (AL extent %llu): marked %d, want %d",
		    (unsigned long long)e, (unsigned long long)(e / PER_AL),
		    cr_test(c, e), want(e));
		n += want(e);
	}
	ck_assert_uint_eq(c->c_ndirty, n);
}

/* The header on disk, as the next open would find it. */
static struct meta
disk_meta(void)
{
	struct meta m;
	struct meta_file *mf = NULL;
	char err[8192] = "";
	uint8_t *bits = malloc(meta_bitmap_bytes(CFG.vol_size, EXT));

	ck_assert_ptr_nonnull(bits);
	ck_assert_msg(meta_open(CFG.vol_metadata, CFG.vol_size, EXT, &m, bits,
	    &mf, err, sizeof(err)) == 0, "%s", err);
	meta_close(mf);
	free(bits);
	return m;
}

static int
in_al(uint64_t ext, uint64_t al)
{
	return ext / PER_AL == al;
}

static int
al_is_hot(const struct cr *c, uint64_t al)
{
	for (uint32_t i = 0; i < c->c_m.md_al_count; i++)
		if (c->c_m.md_al[i] == al)
			return 1;
	return 0;
}

/* ---- open ---------------------------------------------------------- */

START_TEST(open_creates_then_reopens)
{
	struct cr c;
	struct stat st;

	cfg_init(10 * EXT + 4096, 127);
	ck_assert_int_eq(stat(CFG.vol_metadata, &st), -1);
	open_expect(&c, 1);
	ck_assert_int_eq(stat(CFG.vol_metadata, &st), 0);
	ck_assert_uint_eq(c.c_nbits, 11);		/* last extent partial */
	ck_assert_uint_eq(c.c_ndirty, 0);
	ck_assert_uint_eq(c.c_m.md_size, 10 * EXT + 4096);
	ck_assert_uint_eq(c.c_m.md_extent_size, EXT);
	ck_assert_uint_eq(c.c_m.md_al_count, 0);
	ck_assert_uint_eq(cr_next(&c, 0), c.c_nbits);
	ck_assert_int_eq(cr_close(&c, 1), 0);

	open_expect(&c, 0);
	ck_assert_uint_eq(c.c_nbits, 11);
	ck_assert_uint_eq(c.c_ndirty, 0);
	ck_assert_uint_eq(c.c_m.md_size, 10 * EXT + 4096);
	ck_assert_int_eq(cr_close(&c, 1), 0);

	/* An unclean stop with nothing hot marks nothing either. */
	open_expect(&c, 0);
	crash_reopen(&c);
	ck_assert_uint_eq(c.c_ndirty, 0);
	cr_close(&c, 1);
}
END_TEST

START_TEST(open_refuses_other_size)
{
	struct cr c;
	char err[8192] = "";

	cfg_init(64 * EXT, 127);
	open_expect(&c, 1);
	cr_close(&c, 1);
	CFG.vol_size = 128 * EXT;
	/* A refused open frees what it allocated (LeakSanitizer checks
	 * this in the SAN build). */
	ck_assert_int_eq(cr_open(&c, &CFG, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, CFG.vol_metadata) != NULL, "%s", err);
	/* daemon.c tells a configuration error (EX_CONFIG) by this text. */
	ck_assert_msg(strstr(err, "the configuration says") != NULL, "%s", err);
	cr_close(&c, 0);
}
END_TEST

/* ---- the bitmap ---------------------------------------------------- */

START_TEST(mark_test_next_clear)
{
	struct cr c;

	cfg_init(10 * EXT + 4096, 127);	/* 11 extents, the last 4 KiB */
	open_expect(&c, 1);

	/* Two bytes straddling extents 0 and 1 mark both. */
	cr_mark(&c, EXT - 1, 2);
	ck_assert_uint_eq(c.c_ndirty, 2);
	ck_assert_int_eq(cr_test(&c, 0), 1);
	ck_assert_int_eq(cr_test(&c, 1), 1);
	ck_assert_int_eq(cr_test(&c, 2), 0);
	/* Marking again counts nothing. */
	cr_mark(&c, 0, 2 * EXT);
	ck_assert_uint_eq(c.c_ndirty, 2);
	/* Exactly one extent, aligned: not its neighbours. */
	cr_mark(&c, 3 * EXT, EXT);
	ck_assert_uint_eq(c.c_ndirty, 3);
	ck_assert_int_eq(cr_test(&c, 2), 0);
	ck_assert_int_eq(cr_test(&c, 3), 1);
	ck_assert_int_eq(cr_test(&c, 4), 0);
	/* Across a byte of the bitmap: extents 7 and 8. */
	cr_mark(&c, 8 * EXT - 512, 1024);
	ck_assert_uint_eq(c.c_ndirty, 5);
	ck_assert_int_eq(cr_test(&c, 6), 0);
	ck_assert_int_eq(cr_test(&c, 7), 1);
	ck_assert_int_eq(cr_test(&c, 8), 1);
	/* The last, partial extent. */
	cr_mark(&c, 10 * EXT, 4096);
	ck_assert_uint_eq(c.c_ndirty, 6);
	ck_assert_int_eq(cr_test(&c, 10), 1);
	ck_assert_int_eq(cr_test(&c, 9), 0);
	/* A range running past the end stops at the last extent. */
	cr_mark(&c, 9 * EXT + 1, 1ull << 30);
	ck_assert_uint_eq(c.c_ndirty, 7);
	ck_assert_int_eq(cr_test(&c, 9), 1);
	ck_assert_uint_eq(count_bits(&c), 7);

	/* cr_next walks the set bits in order, then says c_nbits. */
	ck_assert_uint_eq(cr_next(&c, 0), 0);
	ck_assert_uint_eq(cr_next(&c, 1), 1);
	ck_assert_uint_eq(cr_next(&c, 2), 3);
	ck_assert_uint_eq(cr_next(&c, 4), 7);
	ck_assert_uint_eq(cr_next(&c, 9), 9);
	ck_assert_uint_eq(cr_next(&c, 10), 10);
	ck_assert_uint_eq(cr_next(&c, 11), 11);

	cr_clear(&c, 9);
	ck_assert_uint_eq(c.c_ndirty, 6);
	cr_clear(&c, 9);			/* already clear */
	ck_assert_uint_eq(c.c_ndirty, 6);
	ck_assert_uint_eq(cr_next(&c, 9), 10);
	cr_clear(&c, 10);
	ck_assert_uint_eq(cr_next(&c, 9), c.c_nbits);
	for (uint64_t e = 0; e < c.c_nbits; e++)
		cr_clear(&c, e);
	ck_assert_uint_eq(c.c_ndirty, 0);
	ck_assert_uint_eq(cr_next(&c, 0), c.c_nbits);

	cr_mark_all(&c);
	ck_assert_uint_eq(c.c_ndirty, 11);
	ck_assert_uint_eq(count_bits(&c), 11);
	ck_assert_uint_eq(cr_next(&c, 5), 5);
	cr_close(&c, 1);
}
END_TEST

START_TEST(next_skips_empty_bytes)
{
	struct cr c;

	cfg_init(1000 * EXT, 127);
	open_expect(&c, 1);
	cr_mark(&c, 999 * EXT, 1);
	cr_mark(&c, 517 * EXT, 1);
	ck_assert_uint_eq(cr_next(&c, 0), 517);
	ck_assert_uint_eq(cr_next(&c, 3), 517);		/* unaligned start */
	/* From inside an empty byte to the first bit of the next one. */
	cr_mark(&c, 8 * EXT, 1);
	ck_assert_uint_eq(cr_next(&c, 3), 8);
	ck_assert_uint_eq(cr_next(&c, 9), 517);
	ck_assert_uint_eq(cr_next(&c, 518), 999);
	ck_assert_uint_eq(cr_next(&c, 1000), 1000);
	cr_close(&c, 1);
}
END_TEST

START_TEST(merge_ors_in_peer_bits)
{
	struct cr c;
	uint8_t peer[2] = { 0, 0 };

	cfg_init(10 * EXT + 4096, 127);	/* 11 bits: 2 bytes, 5 spare */
	open_expect(&c, 1);
	cr_mark(&c, 1 * EXT, 1);
	cr_mark(&c, 4 * EXT, 1);
	peer[0] = (1u << 1) | (1u << 2) | (1u << 7);	/* 1 is set already */
	peer[1] = (1u << 2) | 0xf8;	/* bit 10, and spare bits past 11 */
	cr_merge(&c, peer);
	ck_assert_uint_eq(c.c_ndirty, 5);		/* 1, 2, 4, 7, 10 */
	ck_assert_int_eq(cr_test(&c, 1), 1);
	ck_assert_int_eq(cr_test(&c, 2), 1);
	ck_assert_int_eq(cr_test(&c, 4), 1);
	ck_assert_int_eq(cr_test(&c, 7), 1);
	ck_assert_int_eq(cr_test(&c, 10), 1);
	ck_assert_int_eq(cr_test(&c, 3), 0);
	ck_assert_uint_eq(count_bits(&c), 5);
	ck_assert_uint_eq(cr_next(&c, 8), 10);
	ck_assert_uint_eq(cr_next(&c, 11), 11);
	/* Merging never clears. */
	memset(peer, 0, sizeof(peer));
	cr_merge(&c, peer);
	ck_assert_uint_eq(c.c_ndirty, 5);
	/* And it is saved like any mark. */
	ck_assert_int_eq(cr_save(&c), 0);
	crash_reopen(&c);
	ck_assert_uint_eq(c.c_ndirty, 5);
	ck_assert_int_eq(cr_test(&c, 10), 1);
	cr_close(&c, 1);
}
END_TEST

/* ---- save and close ------------------------------------------------ */

static int
want_saved(uint64_t e)
{
	return e == 5 || e == 6 || e == 3 * PER_AL + 9 || e == 9 * PER_AL + 1;
}

START_TEST(save_clean_close_keeps_bits_not_al)
{
	struct cr c;
	struct meta m;
	uint64_t bm;

	cfg_init(9 * ALX + 2 * EXT, 127);	/* 10 AL extents, last partial */
	open_expect(&c, 1);
	/* Writes into AL extents 0, 3 and 9 (marking some of their
	 * extents), and into 5 (marking none). */
	ck_assert_int_eq(cr_begin(&c, 5 * EXT, 2 * EXT, 1), 0);
	cr_mark(&c, 5 * EXT, 2 * EXT);
	ck_assert_int_eq(cr_begin(&c, 3 * ALX + 9 * EXT, 100, 1), 0);
	cr_mark(&c, 3 * ALX + 9 * EXT, 100);
	ck_assert_int_eq(cr_begin(&c, 9 * ALX + EXT, 4096, 1), 0);
	cr_mark(&c, 9 * ALX + EXT, 4096);
	ck_assert_int_eq(cr_begin(&c, 5 * ALX, 4096, 1), 0);
	cr_end(&c, 5 * EXT, 2 * EXT, 1, 1);
	cr_end(&c, 3 * ALX + 9 * EXT, 100, 1, 1);
	cr_end(&c, 9 * ALX + EXT, 4096, 1, 1);
	cr_end(&c, 5 * ALX, 4096, 1, 1);
	bm = c.c_bm_commits;
	ck_assert_int_eq(cr_save(&c), 0);
	ck_assert_uint_eq(c.c_bm_commits, bm + 1);
	ck_assert_int_eq(cr_save(&c), 0);		/* nothing new */
	ck_assert_uint_eq(c.c_bm_commits, bm + 1);

	/* On disk while running: not clean, and AL extents 0, 3, 5, 9. */
	m = disk_meta();
	ck_assert(!(m.md_flags & META_F_CLEAN));
	ck_assert_uint_eq(m.md_al_count, 4);
	ck_assert_int_eq(cr_close(&c, 1), 0);
	/* After a clean stop: clean, with an empty AL. */
	m = disk_meta();
	ck_assert(m.md_flags & META_F_CLEAN);
	ck_assert_uint_eq(m.md_al_count, 0);

	open_expect(&c, 0);
	assert_marked(&c, want_saved);
	ck_assert_uint_eq(c.c_m.md_al_count, 0);
	/* An unclean stop now: nothing is hot since the reopen. */
	crash_reopen(&c);
	assert_marked(&c, want_saved);
	cr_close(&c, 1);
}
END_TEST

START_TEST(clean_close_saves_unsaved_bits)
{
	struct cr c;

	cfg_init(9 * ALX + 2 * EXT, 127);
	open_expect(&c, 1);
	ck_assert_int_eq(cr_begin(&c, 0, ALX, 1), 0);
	cr_mark(&c, 5 * EXT, 2 * EXT);
	cr_end(&c, 0, ALX, 1, 1);
	cr_mark(&c, 3 * ALX + 9 * EXT, 1);	/* as a caller with cr_save */
	cr_mark(&c, 9 * ALX + EXT, 1);
	/* No cr_save: the clean close writes them. */
	clean_reopen(&c);
	assert_marked(&c, want_saved);

	/* Cleared bits are saved the same way. */
	cr_clear(&c, 5);
	clean_reopen(&c);
	ck_assert_int_eq(cr_test(&c, 5), 0);
	ck_assert_uint_eq(c.c_ndirty, 3);
	cr_close(&c, 1);
}
END_TEST

START_TEST(commit_persists_header)
{
	struct cr c;

	cfg_init(64 * EXT, 127);
	open_expect(&c, 1);
	for (int i = 0; i < META_UUID_LEN; i++)
		c.c_m.md_uuid[i] = (uint8_t)(i + 1);
	c.c_m.md_role = ROLE_MIRROR;
	c.c_m.md_flags |= META_F_INCONSISTENT;
	ck_assert_int_eq(cr_commit(&c), 0);
	crash_reopen(&c);
	ck_assert_int_eq(meta_has_uuid(&c.c_m), 1);
	ck_assert_uint_eq(c.c_m.md_uuid[META_UUID_LEN - 1], META_UUID_LEN);
	ck_assert_uint_eq(c.c_m.md_role, ROLE_MIRROR);
	ck_assert(c.c_m.md_flags & META_F_INCONSISTENT);
	clean_reopen(&c);
	ck_assert_uint_eq(c.c_m.md_role, ROLE_MIRROR);
	ck_assert(c.c_m.md_flags & META_F_INCONSISTENT);
	cr_close(&c, 1);
}
END_TEST

/* ---- crashes and the activity log ---------------------------------- */

/* A crash in a resync (inconsistent): every extent; a clean stop: none. */
START_TEST(crash_while_inconsistent_marks_all)
{
	struct cr c;

	cfg_init(64 * EXT, 127);
	open_expect(&c, 1);
	c.c_m.md_flags |= META_F_INCONSISTENT;
	ck_assert_int_eq(cr_commit(&c), 0);
	clean_reopen(&c);
	ck_assert_uint_eq(c.c_ndirty, 0);
	crash_reopen(&c);
	ck_assert_uint_eq(c.c_ndirty, c.c_nbits);
	ck_assert_uint_eq(count_bits(&c), 64);
	/* Consistent again: a crash marks only what was hot. */
	c.c_m.md_flags &= ~META_F_INCONSISTENT;
	for (uint64_t e = 0; e < c.c_nbits; e++)
		cr_clear(&c, e);
	ck_assert_int_eq(cr_save(&c), 0);
	crash_reopen(&c);
	ck_assert_uint_eq(c.c_ndirty, 0);
	cr_close(&c, 1);
}
END_TEST

static int
want_crash(uint64_t e)
{
	/* Hot: AL extents 1, 3, 4, 9 (2 extents); saved: one in 7. */
	return in_al(e, 1) || in_al(e, 3) || in_al(e, 4) || in_al(e, 9) ||
	    e == 7 * PER_AL + 33;
}

START_TEST(crash_marks_every_hot_al_extent)
{
	struct cr c;

	cfg_init(9 * ALX + 2 * EXT, 127);	/* 10 AL extents, last partial */
	open_expect(&c, 1);
	ck_assert_uint_eq(c.c_nal, 10);
	/* Begun and ended, and still in flight; one straddles 3 and 4. */
	ck_assert_int_eq(cr_begin(&c, ALX + 100, 10, 2), 0);
	ck_assert_int_eq(cr_begin(&c, 4 * ALX - EXT, 2 * EXT, 2), 0);
	ck_assert_int_eq(cr_begin(&c, 9 * ALX + EXT, 4096, 2), 0);
	ck_assert(al_is_hot(&c, 1) && al_is_hot(&c, 3) && al_is_hot(&c, 4) &&
	    al_is_hot(&c, 9));
	ck_assert_uint_eq(c.c_m.md_al_count, 4);
	cr_end(&c, ALX + 100, 10, 2, 1);
	cr_end(&c, 4 * ALX - EXT, 2 * EXT, 1, 1);
	/* A bit saved outside the AL. */
	cr_mark(&c, 7 * ALX + 33 * EXT, 1);
	ck_assert_int_eq(cr_save(&c), 0);
	/* Bits marked in memory only, inside hot extents. */
	cr_mark(&c, ALX, EXT);

	crash_reopen(&c);
	assert_marked(&c, want_crash);
	ck_assert_uint_eq(c.c_ndirty, 3 * PER_AL + 2 + 1);
	ck_assert_uint_eq(c.c_m.md_al_count, 0);
	/* The marks were saved at the reopen: a second crash adds none. */
	crash_reopen(&c);
	assert_marked(&c, want_crash);
	clean_reopen(&c);
	assert_marked(&c, want_crash);
	cr_close(&c, 1);
}
END_TEST

static int
want_retire(uint64_t e)
{
	/* The bit marked inside retired AL extent 1, and busy extent 3. */
	return e == PER_AL + 2 || in_al(e, 3);
}

/* Idle entries leave the AL (their bits saved first); busy ones stay. */
START_TEST(al_retire_idle)
{
	struct cr c;
	uint64_t commits;

	cfg_init(9 * ALX + 2 * EXT, 127);
	open_expect(&c, 1);
	ck_assert_int_eq(cr_begin(&c, ALX, 10, 1), 0);
	ck_assert_int_eq(cr_begin(&c, 2 * ALX, 10, 1), 0);
	ck_assert_int_eq(cr_begin(&c, 3 * ALX, 10, 1), 0);
	cr_end(&c, ALX, 10, 1, 1);
	cr_end(&c, 2 * ALX, 10, 1, 1);
	cr_mark(&c, ALX + 2 * EXT, 1);	/* in memory only, inside AL 1 */
	/* Not idle long enough yet: nothing leaves, nothing is written. */
	commits = c.c_al_commits;
	ck_assert_int_eq(cr_retire(&c, 3600 * UINT64_C(1000000000)), 0);
	ck_assert_uint_eq(c.c_m.md_al_count, 3);
	ck_assert_uint_eq(c.c_al_commits, commits);
	ck_assert_int_eq(cr_retire(&c, 0), 0);
	ck_assert(!al_is_hot(&c, 1) && !al_is_hot(&c, 2) && al_is_hot(&c, 3));
	ck_assert_uint_eq(c.c_m.md_al_count, 1);
	ck_assert_uint_eq(c.c_al_commits, commits + 1);
	crash_reopen(&c);
	assert_marked(&c, want_retire);
	cr_close(&c, 1);
}
END_TEST

static int flush_calls[2];	/* by wait */

/* arg: the durable stamp. Waiting, it "flushes": the stamp moves on. */
static int
count_flush(void *arg, int wait)
{
	flush_calls[wait]++;
	if (wait)
		*(uint64_t *)arg = now_ns();
	return 0;
}

/* With cr_set_durable, an idle entry leaves only once a flush that began
 * after its last write ended has succeeded; until then it asks for one. */
START_TEST(al_retire_waits_for_a_flush)
{
	struct cr c;
	uint64_t durable = 0, errors = 0;

	cfg_init(9 * ALX + 2 * EXT, 127);
	open_expect(&c, 1);
	memset(flush_calls, 0, sizeof(flush_calls));
	cr_set_durable(&c, &durable, &errors, count_flush, &durable);
	ck_assert_int_eq(cr_begin(&c, ALX, 10, 1), 0);
	durable = now_ns();	/* a flush that began before the write ended */
	cr_end(&c, ALX, 10, 1, 1);
	ck_assert_int_eq(cr_retire(&c, 0), 0);
	ck_assert(al_is_hot(&c, 1));
	ck_assert_int_eq(flush_calls[0], 1);
	durable = now_ns();	/* one that began after */
	ck_assert_int_eq(cr_retire(&c, 0), 0);
	ck_assert(!al_is_hot(&c, 1));
	ck_assert_uint_eq(c.c_m.md_al_count, 0);
	ck_assert_int_eq(flush_calls[0], 1);
	ck_assert_int_eq(flush_calls[1], 0);
	cr_close(&c, 1);
}
END_TEST

static int
want_flush_failed(uint64_t e)
{
	return in_al(e, 1) || in_al(e, 3);
}

/* A failed flush marks every hot extent and saves the marks; in a
 * mirror's unfinished resync, every extent. */
START_TEST(al_flush_failed_marks_hot)
{
	struct cr c;
	uint64_t commits, durable = 0, errors = 0;

	cfg_init(9 * ALX + 2 * EXT, 127);
	open_expect(&c, 1);
	cr_set_durable(&c, &durable, &errors, count_flush, &durable);
	ck_assert_int_eq(cr_begin(&c, ALX, 10, 1), 0);
	cr_end(&c, ALX, 10, 1, 1);
	ck_assert_int_eq(cr_begin(&c, 3 * ALX, 10, 1), 0);	/* in flight */
	commits = c.c_bm_commits;
	cr_check_flushes(&c);		/* nothing failed: nothing marked */
	ck_assert_uint_eq(c.c_ndirty, 0);
	errors++;
	cr_check_flushes(&c);
	assert_marked(&c, want_flush_failed);
	ck_assert_uint_eq(c.c_ndirty, 2 * PER_AL);
	/* Saved, not only in memory. */
	ck_assert_uint_eq(c.c_bm_commits, commits + 1);
	ck_assert_int_eq(c.c_unsaved, 0);
	cr_end(&c, 3 * ALX, 10, 1, 1);
	/* Once only: the next look finds no new failure. */
	cr_check_flushes(&c);
	ck_assert_uint_eq(c.c_bm_commits, commits + 1);
	c.c_m.md_flags |= META_F_INCONSISTENT;
	errors++;
	cr_check_flushes(&c);
	ck_assert_uint_eq(c.c_ndirty, c.c_nbits);
	cr_close(&c, 1);
}
END_TEST

/* Eviction too: with no durable victim the AL grows past its cap. */
START_TEST(al_eviction_waits_for_a_flush)
{
	struct cr c;
	uint64_t durable = 0, errors = 0;

	cfg_init(9 * ALX + 2 * EXT, 2);
	open_expect(&c, 1);
	memset(flush_calls, 0, sizeof(flush_calls));
	cr_set_durable(&c, &durable, &errors, count_flush, &durable);
	ck_assert_int_eq(cr_begin(&c, 0, 1, 1), 0);		/* A */
	cr_end(&c, 0, 1, 1, 1);
	ck_assert_int_eq(cr_begin(&c, ALX, 1, 1), 0);		/* B */
	cr_end(&c, ALX, 1, 1, 1);
	ck_assert_int_eq(cr_begin(&c, 2 * ALX, 1, 1), 0);	/* C */
	cr_end(&c, 2 * ALX, 1, 1, 1);
	ck_assert_uint_eq(c.c_m.md_al_count, 3);
	ck_assert(al_is_hot(&c, 0) && al_is_hot(&c, 1) && al_is_hot(&c, 2));
	/* C's begin asked for one in the background. */
	ck_assert_int_eq(flush_calls[0], 1);
	ck_assert_int_eq(flush_calls[1], 0);
	durable = now_ns();
	ck_assert_int_eq(cr_begin(&c, 3 * ALX, 1, 1), 0);	/* D */
	cr_end(&c, 3 * ALX, 1, 1, 1);
	/* Back to the cap: the two least recently used left. */
	ck_assert_uint_eq(c.c_m.md_al_count, 2);
	ck_assert(!al_is_hot(&c, 0) && !al_is_hot(&c, 1) &&
	    al_is_hot(&c, 2) && al_is_hot(&c, 3));
	cr_close(&c, 1);
}
END_TEST

static int
want_evict(uint64_t e)
{
	/* Bits 5 and 6 of the evicted AL extent 0; B (2) and C (5) hot. */
	return e == 5 || e == 6 || in_al(e, 2) || in_al(e, 5);
}

START_TEST(al_eviction_saves_bits_first)
{
	struct cr c;

	cfg_init(9 * ALX + 2 * EXT, 2);
	open_expect(&c, 1);
	ck_assert_uint_eq(c.c_al_commits, 0);
	ck_assert_uint_eq(c.c_bm_commits, 1);		/* the open's save */

	/* A: AL extent 0, with bits marked under its reference. */
	ck_assert_int_eq(cr_begin(&c, 0, EXT, 1), 0);
	ck_assert_uint_eq(c.c_al_commits, 1);
	cr_mark(&c, 5 * EXT, 2 * EXT);
	cr_end(&c, 0, EXT, 1, 1);
	/* Hot already: no commit. */
	ck_assert_int_eq(cr_begin(&c, 5 * EXT, 2 * EXT, 1), 0);
	cr_end(&c, 5 * EXT, 2 * EXT, 1, 1);
	ck_assert_uint_eq(c.c_al_commits, 1);
	/* B: AL extent 2. */
	ck_assert_int_eq(cr_begin(&c, 2 * ALX, 4096, 1), 0);
	cr_end(&c, 2 * ALX, 4096, 1, 1);
	ck_assert_uint_eq(c.c_al_commits, 2);
	ck_assert_uint_eq(c.c_bm_commits, 1);
	/* C: AL extent 5 evicts A, whose bits go to disk with the header
	 * that drops it: one bitmap commit. */
	ck_assert_int_eq(cr_begin(&c, 5 * ALX, 4096, 1), 0);
	cr_end(&c, 5 * ALX, 4096, 1, 1);
	ck_assert_uint_eq(c.c_al_commits, 3);
	ck_assert_uint_eq(c.c_bm_commits, 2);
	ck_assert_uint_eq(c.c_m.md_al_count, 2);
	ck_assert(!al_is_hot(&c, 0) && al_is_hot(&c, 2) && al_is_hot(&c, 5));

	crash_reopen(&c);
	assert_marked(&c, want_evict);

	/* An eviction with no bits set since the last save writes the
	 * header only. */
	ck_assert_uint_eq(c.c_bm_commits, 1);
	ck_assert_uint_eq(c.c_al_commits, 0);
	ck_assert_int_eq(cr_begin(&c, 6 * ALX, 1, 1), 0);
	cr_end(&c, 6 * ALX, 1, 1, 1);
	ck_assert_int_eq(cr_begin(&c, 7 * ALX, 1, 1), 0);
	cr_end(&c, 7 * ALX, 1, 1, 1);
	ck_assert_int_eq(cr_begin(&c, 8 * ALX, 1, 1), 0);
	cr_end(&c, 8 * ALX, 1, 1, 1);
	ck_assert_uint_eq(c.c_al_commits, 3);
	ck_assert_uint_eq(c.c_bm_commits, 1);
	ck_assert_uint_eq(c.c_m.md_al_count, 2);
	cr_close(&c, 1);
}
END_TEST

static int
want_lru(uint64_t e)
{
	return in_al(e, 0) || in_al(e, 3);
}

START_TEST(al_evicts_least_recently_used)
{
	struct cr c;

	cfg_init(9 * ALX + 2 * EXT, 2);
	open_expect(&c, 1);
	ck_assert_int_eq(cr_begin(&c, 0, 1, 1), 0);		/* A */
	cr_end(&c, 0, 1, 1, 1);
	ck_assert_int_eq(cr_begin(&c, ALX, 1, 1), 0);		/* B */
	cr_end(&c, ALX, 1, 1, 1);
	ck_assert_int_eq(cr_begin(&c, 100, 1, 1), 0);		/* A again */
	cr_end(&c, 100, 1, 1, 1);
	ck_assert_int_eq(cr_begin(&c, 3 * ALX, 1, 1), 0);	/* evicts B */
	cr_end(&c, 3 * ALX, 1, 1, 1);
	ck_assert(al_is_hot(&c, 0) && !al_is_hot(&c, 1) && al_is_hot(&c, 3));
	crash_reopen(&c);
	assert_marked(&c, want_lru);
	cr_close(&c, 1);
}
END_TEST

static int
want_busy(uint64_t e)
{
	return in_al(e, 0) || in_al(e, 1) || in_al(e, 2);
}

START_TEST(al_busy_extents_are_not_evicted)
{
	struct cr c;

	cfg_init(9 * ALX + 2 * EXT, 2);
	open_expect(&c, 1);
	/* Three writes in flight with room for two cold entries: the AL
	 * grows rather than drop a busy extent. */
	ck_assert_int_eq(cr_begin(&c, 0, 1, 2), 0);
	ck_assert_int_eq(cr_begin(&c, ALX, 1, 2), 0);
	ck_assert_int_eq(cr_begin(&c, 2 * ALX, 1, 2), 0);
	ck_assert_uint_eq(c.c_m.md_al_count, 3);
	/* Half the references dropped: still busy. */
	cr_end(&c, 0, 1, 1, 1);
	ck_assert_int_eq(cr_begin(&c, 2 * ALX + 1, 1, 1), 0);
	ck_assert_uint_eq(c.c_m.md_al_count, 3);
	crash_reopen(&c);
	assert_marked(&c, want_busy);
	cr_close(&c, 1);
}
END_TEST

static int
want_full(uint64_t e)
{
	/* AL extent 0 was evicted; 1..1023 and 1025 are hot; the refused
	 * range left two bits in 1024. */
	if (in_al(e, 0))
		return 0;
	if (in_al(e, META_AL_MAX))
		return e == META_AL_MAX * (uint64_t)PER_AL + 1 ||
		    e == META_AL_MAX * (uint64_t)PER_AL + 2;
	return 1;
}

/* The mark hook's calls: count and the last span. */
static struct {
	int		n;
	uint64_t	off, len;
} hooked;

static void
mark_hook(void *arg, uint64_t off, uint64_t len)
{
	ck_assert_ptr_eq(arg, &hooked);
	hooked.n++;
	hooked.off = off;
	hooked.len = len;
}

START_TEST(al_full_of_busy_marks_instead)
{
	struct cr c;
	uint64_t over = META_AL_MAX * ALX + EXT;	/* in AL extent 1024 */
	uint64_t bm;

	cfg_init((META_AL_MAX + 2) * ALX, 2);
	open_expect(&c, 1);
	memset(&hooked, 0, sizeof(hooked));
	cr_set_mark_hook(&c, mark_hook, &hooked);
	for (uint64_t a = 0; a < META_AL_MAX; a++)
		ck_assert_int_eq(cr_begin(&c, a * ALX + 4096, 4096, 1), 0);
	ck_assert_uint_eq(c.c_m.md_al_count, META_AL_MAX);
	ck_assert_uint_eq(c.c_al_commits, META_AL_MAX);
	ck_assert_uint_eq(c.c_ndirty, 0);

	/* Every entry busy: the range is marked and saved instead. */
	bm = c.c_bm_commits;
	ck_assert_int_eq(cr_begin(&c, over, 2 * EXT, 1), 1);
	ck_assert_uint_eq(c.c_m.md_al_count, META_AL_MAX);
	ck_assert(!al_is_hot(&c, META_AL_MAX));
	ck_assert_uint_eq(c.c_ndirty, 2);
	ck_assert_int_eq(cr_test(&c, META_AL_MAX * (uint64_t)PER_AL + 1), 1);
	ck_assert_int_eq(cr_test(&c, META_AL_MAX * (uint64_t)PER_AL + 2), 1);
	ck_assert_uint_eq(c.c_bm_commits, bm + 1);
	ck_assert_uint_eq(c.c_al_commits, META_AL_MAX);
	/* The hook saw that mark (a resync must not clear it), and only
	 * that one: tracked writes mark nothing. */
	ck_assert_int_eq(hooked.n, 1);
	ck_assert_uint_eq(hooked.off, over);
	ck_assert_uint_eq(hooked.len, 2 * EXT);
	cr_end(&c, over, 2 * EXT, 1, 0);	/* untracked: a no-op */

	/* One reference dropped: the next new extent takes its place. */
	cr_end(&c, 4096, 4096, 1, 1);
	ck_assert_int_eq(cr_begin(&c, (META_AL_MAX + 1) * ALX, 1, 1), 0);
	ck_assert_uint_eq(c.c_m.md_al_count, META_AL_MAX);
	ck_assert(!al_is_hot(&c, 0) && al_is_hot(&c, META_AL_MAX + 1));

	crash_reopen(&c);
	assert_marked(&c, want_full);
	cr_set_mark_hook(&c, mark_hook, &hooked);
	cr_mark_all(&c);			/* the whole volume */
	ck_assert_int_eq(hooked.n, 2);
	ck_assert_uint_eq(hooked.off, 0);
	ck_assert_uint_eq(hooked.len, (META_AL_MAX + 2) * ALX);
	cr_close(&c, 1);
}
END_TEST

/* Full of idle entries that wait for a flush: one is made at once, and
 * they leave instead of the new range being marked. */
START_TEST(al_full_of_idle_flushes_now)
{
	struct cr c;
	uint64_t durable = 0, errors = 0;

	cfg_init((META_AL_MAX + 2) * ALX, 2);
	open_expect(&c, 1);
	memset(flush_calls, 0, sizeof(flush_calls));
	cr_set_durable(&c, &durable, &errors, count_flush, &durable);
	for (uint64_t a = 0; a < META_AL_MAX; a++) {
		ck_assert_int_eq(cr_begin(&c, a * ALX, 4096, 1), 0);
		cr_end(&c, a * ALX, 4096, 1, 1);
	}
	ck_assert_uint_eq(c.c_m.md_al_count, META_AL_MAX);
	ck_assert_int_eq(flush_calls[1], 0);
	ck_assert_int_eq(cr_begin(&c, META_AL_MAX * ALX, 4096, 1), 0);
	ck_assert_int_eq(flush_calls[1], 1);
	ck_assert_uint_eq(c.c_ndirty, 0);
	ck_assert_uint_eq(c.c_m.md_al_count, 2);	/* back to the cap */
	ck_assert(al_is_hot(&c, META_AL_MAX));
	cr_end(&c, META_AL_MAX * ALX, 4096, 1, 1);
	cr_close(&c, 1);
}
END_TEST

static int
want_wide(uint64_t e)
{
	/* The straddling write's AL extents 1 and 2. */
	return in_al(e, 1) || in_al(e, 2);
}

/* After a crash: at least the two extents written across AL extents 1 and
 * 2 are marked, and nothing outside those two AL extents. Closes c. */
static void
crash_expect_wide(struct cr *c)
{
	crash_reopen(c);
	ck_assert_int_eq(cr_test(c, 2 * PER_AL - 1), 1);
	ck_assert_int_eq(cr_test(c, 2 * PER_AL), 1);
	for (uint64_t e = 0; e < c->c_nbits; e++)
		if (cr_test(c, e))
			ck_assert_msg(want_wide(e), "extent %llu marked",
			    (unsigned long long)e);
	cr_close(c, 1);
}

START_TEST(al_range_wider_than_cap)
{
	struct cr c;
	int rc;

	/* A range's own entries are never evicted to make room for the
	 * rest of it (al_extents = 1 and a write straddling two AL
	 * extents). */
	cfg_init(9 * ALX + 2 * EXT, 1);
	open_expect(&c, 1);
	ck_assert_int_eq(cr_begin(&c, 0, 1, 1), 0);
	cr_end(&c, 0, 1, 1, 1);
	rc = cr_begin(&c, 2 * ALX - EXT, 2 * EXT, 1);
	ck_assert_msg(rc == 0 || rc == 1, "rc %d", rc);
	if (rc == 0) {
		/* Both AL extents hot (the AL may grow past the cap). */
		ck_assert_msg(al_is_hot(&c, 1) && al_is_hot(&c, 2),
		    "AL extent 1 hot %d, 2 hot %d", al_is_hot(&c, 1),
		    al_is_hot(&c, 2));
	} else {
		ck_assert_int_eq(cr_test(&c, 2 * PER_AL - 1), 1);
		ck_assert_int_eq(cr_test(&c, 2 * PER_AL), 1);
	}
	cr_end(&c, 2 * ALX - EXT, 2 * EXT, 1, rc == 0);
	crash_expect_wide(&c);
}
END_TEST

START_TEST(al_range_keeps_its_own_hot_extent)
{
	struct cr c;
	int rc;

	/* An extent of the range that was already hot (and cold) is not
	 * evicted to make room for the next one. */
	cfg_init(9 * ALX + 2 * EXT, 1);
	open_expect(&c, 1);
	ck_assert_int_eq(cr_begin(&c, ALX, 1, 1), 0);
	cr_end(&c, ALX, 1, 1, 1);
	rc = cr_begin(&c, 2 * ALX - EXT, 2 * EXT, 1);
	ck_assert_msg(rc == 0 || rc == 1, "rc %d", rc);
	if (rc == 0)
		ck_assert_msg(al_is_hot(&c, 1) && al_is_hot(&c, 2),
		    "AL extent 1 hot %d, 2 hot %d", al_is_hot(&c, 1),
		    al_is_hot(&c, 2));
	cr_end(&c, 2 * ALX - EXT, 2 * EXT, 1, rc == 0);
	crash_expect_wide(&c);
}
END_TEST

START_TEST(al_trim_across_many_al_extents)
{
	struct cr c;
	uint64_t n = 130;	/* AL extents the discard covers */
	int rc;

	/* The default al_extents (127) and a 520 MiB discard (mkfs does
	 * such) over 130 AL extents: the AL grows past its cap for it. */
	cfg_init(140 * ALX, 127);
	open_expect(&c, 1);
	rc = cr_begin(&c, 0, n * ALX, 1);
	ck_assert_msg(rc == 0 || rc == 1, "rc %d", rc);
	for (uint64_t a = 0; a < n && rc == 0; a++)
		ck_assert_msg(al_is_hot(&c, a), "AL extent %llu not hot",
		    (unsigned long long)a);
	cr_end(&c, 0, n * ALX, 1, rc == 0);
	crash_reopen(&c);
	for (uint64_t e = 0; e < c.c_nbits; e++)
		ck_assert_msg(cr_test(&c, e) == (e < n * PER_AL),
		    "extent %llu: marked %d", (unsigned long long)e,
		    cr_test(&c, e));
	cr_close(&c, 1);
}
END_TEST

/* ---- generations --------------------------------------------------- */

START_TEST(new_gen_pushes_history)
{
	struct cr c;
	uint64_t g[META_HISTORY + 3];
	int n = META_HISTORY + 3;

	cfg_init(64 * EXT, 127);
	open_expect(&c, 1);
	ck_assert_uint_eq(c.c_m.md_gen, 0);
	c.c_m.md_flags |= META_F_PEER_HAS_GEN | META_F_INCONSISTENT;
	ck_assert_int_eq(cr_commit(&c), 0);

	/* The first generation: nothing to push. */
	ck_assert_int_eq(cr_new_gen(&c), 0);
	g[0] = c.c_m.md_gen;
	ck_assert_uint_ne(g[0], 0);
	for (int i = 0; i < META_HISTORY; i++)
		ck_assert_uint_eq(c.c_m.md_history[i], 0);
	ck_assert(!(c.c_m.md_flags & META_F_PEER_HAS_GEN));
	ck_assert(c.c_m.md_flags & META_F_INCONSISTENT);	/* kept */

	for (int k = 1; k < n; k++) {
		c.c_m.md_flags |= META_F_PEER_HAS_GEN;
		ck_assert_int_eq(cr_new_gen(&c), 0);
		g[k] = c.c_m.md_gen;
		ck_assert(!(c.c_m.md_flags & META_F_PEER_HAS_GEN));
		for (int j = 0; j < k; j++)
			ck_assert_uint_ne(g[k], g[j]);
		/* Newest first, at most META_HISTORY, then empty. */
		for (int i = 0; i < META_HISTORY; i++)
			ck_assert_uint_eq(c.c_m.md_history[i],
			    k - 1 - i >= 0 ? g[k - 1 - i] : 0);
	}
	/* Committed: an unclean stop keeps it all. */
	crash_reopen(&c);
	ck_assert_uint_eq(c.c_m.md_gen, g[n - 1]);
	for (int i = 0; i < META_HISTORY; i++)
		ck_assert_uint_eq(c.c_m.md_history[i], g[n - 2 - i]);
	ck_assert(!(c.c_m.md_flags & META_F_PEER_HAS_GEN));

	ck_assert_int_eq(cr_knows_gen(&c.c_m, g[n - 1]), 1);
	for (int i = 0; i < META_HISTORY; i++)
		ck_assert_int_eq(cr_knows_gen(&c.c_m, g[n - 2 - i]), 1);
	for (int k = 0; k < n - 1 - META_HISTORY; k++)
		ck_assert_int_eq(cr_knows_gen(&c.c_m, g[k]), 0);	/* aged out */
	cr_close(&c, 1);
}
END_TEST

START_TEST(knows_gen)
{
	struct meta m;

	memset(&m, 0, sizeof(m));
	/* No generation yet, and 0 is never one (empty history slots). */
	ck_assert_int_eq(cr_knows_gen(&m, 0), 0);
	ck_assert_int_eq(cr_knows_gen(&m, 5), 0);
	m.md_gen = 5;
	m.md_history[0] = 4;
	m.md_history[META_HISTORY - 1] = 1;
	ck_assert_int_eq(cr_knows_gen(&m, 5), 1);
	ck_assert_int_eq(cr_knows_gen(&m, 4), 1);
	ck_assert_int_eq(cr_knows_gen(&m, 1), 1);
	ck_assert_int_eq(cr_knows_gen(&m, 0), 0);
	ck_assert_int_eq(cr_knows_gen(&m, 3), 0);
	ck_assert_int_eq(cr_knows_gen(&m, 6), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("cr");
	TCase *tc = tcase_create("Record");
	TCase *al = tcase_create("ActivityLog");
	TCase *gen = tcase_create("Generations");
	SRunner *sr;
	int failed;

	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, test_setup, test_teardown);
	tcase_add_test(tc, open_creates_then_reopens);
	tcase_add_test(tc, open_refuses_other_size);
	tcase_add_test(tc, mark_test_next_clear);
	tcase_add_test(tc, next_skips_empty_bytes);
	tcase_add_test(tc, merge_ors_in_peer_bits);
	tcase_add_test(tc, save_clean_close_keeps_bits_not_al);
	tcase_add_test(tc, clean_close_saves_unsaved_bits);
	tcase_add_test(tc, commit_persists_header);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tcase_add_unchecked_fixture(al, base_setup, base_teardown);
	tcase_add_checked_fixture(al, test_setup, test_teardown);
	tcase_add_test(al, crash_marks_every_hot_al_extent);
	tcase_add_test(al, crash_while_inconsistent_marks_all);
	tcase_add_test(al, al_eviction_saves_bits_first);
	tcase_add_test(al, al_evicts_least_recently_used);
	tcase_add_test(al, al_busy_extents_are_not_evicted);
	tcase_add_test(al, al_full_of_busy_marks_instead);
	tcase_add_test(al, al_range_wider_than_cap);
	tcase_add_test(al, al_range_keeps_its_own_hot_extent);
	tcase_add_test(al, al_trim_across_many_al_extents);
	tcase_add_test(al, al_retire_idle);
	tcase_add_test(al, al_retire_waits_for_a_flush);
	tcase_add_test(al, al_eviction_waits_for_a_flush);
	tcase_add_test(al, al_flush_failed_marks_hot);
	tcase_add_test(al, al_full_of_idle_flushes_now);
	tcase_set_timeout(al, 120);
	suite_add_tcase(s, al);

	tcase_add_unchecked_fixture(gen, base_setup, base_teardown);
	tcase_add_checked_fixture(gen, test_setup, test_teardown);
	tcase_add_test(gen, new_gen_pushes_history);
	tcase_add_test(gen, knows_gen);
	suite_add_tcase(s, gen);

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
