/*
 * check_pool.c: the per-op free list (common/pool.c): small objects are
 * reused, most recent first; large ones and those past the cap are not
 * kept; after pool_fini nothing is kept.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/pool.h"

START_TEST(small_objects_are_reused_newest_first)
{
	struct pool pl;
	void *a, *b;

	pool_init(&pl, 4096, 8);
	a = pool_get(&pl, 100);
	b = pool_get(&pl, 4096);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	memset(a, 1, 4096);		/* every small object is pl_size long */
	memset(b, 2, 4096);
	pool_put(&pl, a, 100);
	pool_put(&pl, b, 4096);
	ck_assert_uint_eq(pl.pl_n, 2);
	ck_assert_ptr_eq(pool_get(&pl, 10), b);
	ck_assert_ptr_eq(pool_get(&pl, 4000), a);
	ck_assert_uint_eq(pl.pl_n, 0);
	ck_assert_uint_eq(pl.pl_reused, 2);
	pool_put(&pl, a, 4000);
	pool_put(&pl, b, 10);
	pool_fini(&pl);
}
END_TEST

START_TEST(large_objects_are_not_kept)
{
	struct pool pl;
	void *a;

	pool_init(&pl, 4096, 8);
	a = pool_get(&pl, 4097);
	ck_assert_ptr_nonnull(a);
	memset(a, 3, 4097);
	pool_put(&pl, a, 4097);
	ck_assert_uint_eq(pl.pl_n, 0);
	ck_assert_ptr_null(pl.pl_free);
	pool_fini(&pl);
}
END_TEST

START_TEST(the_list_stops_at_its_cap)
{
	struct pool pl;
	void *o[5];
	int i;

	pool_init(&pl, 64, 3);
	for (i = 0; i < 5; i++)
		ck_assert_ptr_nonnull(o[i] = pool_get(&pl, 64));
	for (i = 0; i < 5; i++)
		pool_put(&pl, o[i], 64);
	ck_assert_uint_eq(pl.pl_n, 3);
	/* The kept ones are the first three put back, newest first. */
	ck_assert_ptr_eq(pool_get(&pl, 1), o[2]);
	ck_assert_ptr_eq(pool_get(&pl, 1), o[1]);
	ck_assert_ptr_eq(pool_get(&pl, 1), o[0]);
	ck_assert_uint_eq(pl.pl_n, 0);
	for (i = 0; i < 3; i++)
		pool_put(&pl, o[i], 64);
	pool_fini(&pl);
}
END_TEST

START_TEST(after_fini_nothing_is_kept)
{
	struct pool pl;
	void *a;

	pool_init(&pl, 64, 3);
	a = pool_get(&pl, 64);
	pool_put(&pl, a, 64);
	pool_fini(&pl);
	ck_assert_uint_eq(pl.pl_n, 0);
	ck_assert_ptr_null(pl.pl_free);
	a = malloc(64);
	pool_put(&pl, a, 64);	/* freed, not kept: ASan would see a leak */
	ck_assert_ptr_null(pl.pl_free);
}
END_TEST

static Suite *
pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("Core");

	tcase_add_test(tc, small_objects_are_reused_newest_first);
	tcase_add_test(tc, large_objects_are_not_kept);
	tcase_add_test(tc, the_list_stops_at_its_cap);
	tcase_add_test(tc, after_fini_nothing_is_kept);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(pool_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
