/* check_meta.c: the metadata record: round trip, corruption, atomic store. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/meta.h"

static struct meta
sample(void)
{
	struct meta m;

	memset(&m, 0, sizeof(m));
	for (int i = 0; i < META_UUID_LEN; i++)
		m.md_uuid[i] = (uint8_t)(0xa0 + i);
	m.md_size = 20ull << 30;
	m.md_extent_size = 65536;
	return m;
}

START_TEST(encode_decode_round_trip)
{
	struct meta m = sample(), d;
	uint8_t buf[META_SIZE];
	char err[256];

	meta_encode(&m, buf);
	ck_assert_int_eq(meta_decode(buf, sizeof(buf), &d, err, sizeof(err)), 0);
	ck_assert_mem_eq(d.md_uuid, m.md_uuid, META_UUID_LEN);
	ck_assert_uint_eq(d.md_size, m.md_size);
	ck_assert_uint_eq(d.md_extent_size, m.md_extent_size);
	ck_assert_int_eq(meta_has_uuid(&d), 1);
}
END_TEST

START_TEST(corruption_is_detected)
{
	struct meta m = sample(), d;
	uint8_t buf[META_SIZE];
	char err[256];

	meta_encode(&m, buf);
	buf[33] ^= 1;
	ck_assert_int_eq(meta_decode(buf, sizeof(buf), &d, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "checksum mismatch (corrupt)");
	meta_encode(&m, buf);
	buf[0] = 'X';
	ck_assert_int_eq(meta_decode(buf, sizeof(buf), &d, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "not a duet metadata file (bad magic)");
	ck_assert_int_eq(meta_decode(buf, 100, &d, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "is 100 bytes, not 4096");
}
END_TEST

START_TEST(store_and_load)
{
	char dir[] = "/tmp/check_meta.XXXXXX", path[256], tmp[300], err[512];
	struct meta m = sample(), d;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vol.meta", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	ck_assert_int_eq(meta_load(path, &d, err, sizeof(err)), 1);
	ck_assert_int_eq(meta_has_uuid(&d), 0);
	ck_assert_int_eq(meta_store(path, &m, err, sizeof(err)), 0);
	ck_assert_int_eq(access(tmp, F_OK), -1);	/* renamed away */
	ck_assert_int_eq(meta_load(path, &d, err, sizeof(err)), 0);
	ck_assert_mem_eq(d.md_uuid, m.md_uuid, META_UUID_LEN);
	/* A truncated file is refused, naming the path. */
	ck_assert_ptr_nonnull(f = fopen(path, "r+"));
	ck_assert_int_eq(ftruncate(fileno(f), 10), 0);
	fclose(f);
	ck_assert_int_eq(meta_load(path, &d, err, sizeof(err)), -1);
	ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "%s", err);
	unlink(path);
	/* A directory that does not exist: the error names the step. */
	snprintf(path, sizeof(path), "%s/nope/vol.meta", dir);
	ck_assert_int_eq(meta_store(path, &m, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "create") != NULL, "%s", err);
	rmdir(dir);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("meta");
	TCase *tc = tcase_create("Core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, encode_decode_round_trip);
	tcase_add_test(tc, corruption_is_detected);
	tcase_add_test(tc, store_and_load);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
