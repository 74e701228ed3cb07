/*
 * tmpdir.h: temporary directories for a unit test program (include once,
 * after defining TMPDIR_PREFIX, e.g. "duet-cr"). base_setup/base_teardown
 * are the suite's unchecked fixture: one directory under $TMPDIR (or
 * /tmp), removed whole at the end. test_setup/test_teardown are the
 * checked fixture: a fresh directory tdir inside it for each test.
 */
#ifndef DUET_TESTS_TMPDIR_H
#define DUET_TESTS_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include <check.h>

static char basedir[512];
static char tdir[600];

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	remove(p);
	return 0;
}

static void
base_setup(void)
{
	const char *t = getenv("TMPDIR");

	snprintf(basedir, sizeof(basedir), "%.400s/" TMPDIR_PREFIX ".XXXXXX",
	    t != NULL && t[0] != '\0' ? t : "/tmp");
	if (mkdtemp(basedir) == NULL)
		basedir[0] = '\0';
}

static void
base_teardown(void)
{
	if (basedir[0] != '\0')
		nftw(basedir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	basedir[0] = '\0';
}

static void
test_setup(void)
{
	ck_assert_msg(basedir[0] != '\0', "no temporary directory");
	snprintf(tdir, sizeof(tdir), "%s/t.XXXXXX", basedir);
	ck_assert_ptr_nonnull(mkdtemp(tdir));
}

static void
test_teardown(void)
{
	if (tdir[0] != '\0')
		nftw(tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	tdir[0] = '\0';
}

#endif
