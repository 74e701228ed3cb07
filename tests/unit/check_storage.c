/*
 * check_storage.c: the storage backend against a model. Each test gets its
 * own temporary directory; every I/O test keeps an in-memory image of what
 * the volume must hold and compares the whole volume with it byte for byte.
 *
 * The block device case runs the same I/O on a loop device when we are
 * root and losetup works. The device is detached lazily ("losetup -d" while
 * we hold it open) right after it is opened, so the kernel removes it when
 * the test process closes it or dies: a failing test cannot leak it.
 */
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/types.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/magic.h>

#include "common/storage.h"
#include "common/util.h"

#define KiB	(1024ull)
#define MiB	(1024ull * 1024)

/*
 * A base directory per test case, made and removed by the runner itself
 * (unchecked fixture), so that it goes even when a forked test dies; each
 * test gets its own directory inside it (checked fixture).
 */
static char basedir[512];
static char tmpdir[1024];

static void
rm_rf(const char *dir)
{
	char cmd[sizeof(tmpdir) + 32];

	if (dir[0] == '\0')
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static void
base_setup(void)
{
	const char *t = getenv("TMPDIR");

	snprintf(basedir, sizeof(basedir), "%.400s/duet-storage.XXXXXX",
	    t != NULL && t[0] != '\0' ? t : "/tmp");
	if (mkdtemp(basedir) == NULL)
		basedir[0] = '\0';
}

static void
base_teardown(void)
{
	rm_rf(basedir);
	basedir[0] = '\0';
}

static void
storage_setup(void)
{
	ck_assert_msg(basedir[0] != '\0', "no temporary directory");
	snprintf(tmpdir, sizeof(tmpdir), "%s/t.XXXXXX", basedir);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
storage_teardown(void)
{
	rm_rf(tmpdir);
	tmpdir[0] = '\0';
}

static void
tmp_path(char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", tmpdir, name);

	ck_assert(n > 0 && (size_t)n < len);
}

static void
make_file(const char *path, uint64_t size)
{
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

/* Deterministic, non-repeating bytes, so a misplaced block shows. */
static void
fill(unsigned char *p, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)(x >> 24);
	}
}

/* Reads the whole volume back and compares it with the model. */
static void
compare_image(struct storage *st, const unsigned char *model)
{
	unsigned char *buf;
	uint64_t i;

	buf = malloc(st->st_size);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(storage_read(st, buf, st->st_size, 0), 0);
	if (memcmp(buf, model, st->st_size) != 0) {
		for (i = 0; i < st->st_size && buf[i] == model[i]; i++)
			;
		ck_abort_msg("%s differs from the model at byte %llu: "
		    "0x%02x, want 0x%02x", st->st_path, (unsigned long long)i,
		    buf[i], model[i]);
	}
	free(buf);
}

/* One write at (off, len) of fresh pattern, mirrored into the model. */
static void
model_write(struct storage *st, unsigned char *model, uint64_t off,
    uint64_t len, uint64_t seed)
{
	unsigned char *buf, *back;

	buf = malloc(len);
	back = malloc(len);
	ck_assert(buf != NULL && back != NULL);
	fill(buf, len, seed);
	ck_assert_int_eq(storage_write(st, buf, len, off), 0);
	memcpy(model + off, buf, len);
	ck_assert_int_eq(storage_read(st, back, len, off), 0);
	ck_assert_msg(memcmp(buf, back, len) == 0,
	    "read back of %llu bytes at %llu differs",
	    (unsigned long long)len, (unsigned long long)off);
	free(buf);
	free(back);
}

/* Writes at odd offsets and lengths, across 1 MiB, then checks it all. */
static void
io_roundtrip(struct storage *st, unsigned char *model)
{
	static const struct { uint64_t off, len; } w[] = {
		{ 0, 1 },
		{ 1, 3 },
		{ 4095, 2 },
		{ 4097, 511 },
		{ 1 * MiB - 7, 100 },			/* across 1 MiB */
		{ 1 * MiB - 65536 - 13, 3 * 65536 + 29 },/* across, long */
		{ 2 * MiB + 511, 513 },
		{ 3 * MiB + 123, 300001 },
	};
	size_t i;

	for (i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		model_write(st, model, w[i].off, w[i].len, i + 1);
	/* The last byte of the volume, then an overlapping rewrite. */
	model_write(st, model, st->st_size - 1, 1, 100);
	model_write(st, model, 1 * MiB - 3, 6, 101);
	compare_image(st, model);
}

/* Zeroes [off, off + len) both ways and checks against the model. */
static void
io_zeroes(struct storage *st, unsigned char *model)
{
	model_write(st, model, 0, 2 * MiB, 200);

	ck_assert_int_eq(storage_write_zeroes(st, 200000, 65536 + 1, 0), 0);
	memset(model + 65536 + 1, 0, 200000);
	compare_image(st, model);

	ck_assert_int_eq(storage_write_zeroes(st, 4096 + 700, 1 * MiB - 333,
	    1), 0);
	memset(model + 1 * MiB - 333, 0, 4096 + 700);
	compare_image(st, model);

	/* Smaller than a sector, and an empty span. */
	ck_assert_int_eq(storage_write_zeroes(st, 17, 1500001, 1), 0);
	memset(model + 1500001, 0, 17);
	ck_assert_int_eq(storage_write_zeroes(st, 0, 1600000, 0), 0);
	compare_image(st, model);

	/* Outside the volume: refused, nothing changed. */
	ck_assert_int_eq(storage_write_zeroes(st, 2, st->st_size - 1, 0),
	    -EINVAL);
	compare_image(st, model);
}

/* ---------------------------------------------------------------- Open */

START_TEST(test_create_sparse)
{
	struct storage st;
	struct stat sb;
	char path[PATH_MAX], err[512] = "";
	int flags;

	tmp_path(path, sizeof(path), "vol.img");
	ck_assert_int_eq(storage_open(&st, path, 64 * MiB, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(st.st_blockdev, 0);
	ck_assert_uint_eq(st.st_size, 64 * MiB);
	ck_assert_str_eq(st.st_path, path);
	flags = fcntl(st.st_fd, F_GETFD);
	ck_assert(flags != -1 && (flags & FD_CLOEXEC));

	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert(S_ISREG(sb.st_mode));
	ck_assert_int_eq(sb.st_mode & 07777, 0600);
	ck_assert_int_eq(sb.st_size, 64 * MiB);
	ck_assert_msg((uint64_t)sb.st_blocks * 512 < 1 * MiB,
	    "created file is not sparse: %lld blocks",
	    (long long)sb.st_blocks);
	storage_close(&st);
	ck_assert_int_eq(st.st_fd, -1);

	/* Reopened: the same file, used as it is. */
	ck_assert_int_eq(storage_open(&st, path, 64 * MiB, err,
	    sizeof(err)), 0);
	storage_close(&st);
}
END_TEST

START_TEST(test_refuse_smaller)
{
	struct storage st;
	struct stat sb;
	char path[PATH_MAX], err[512] = "", want[PATH_MAX + 128];
	int rc;

	tmp_path(path, sizeof(path), "small.img");
	make_file(path, 1 * MiB);
	rc = storage_open(&st, path, 2 * MiB, err, sizeof(err));
	ck_assert_int_eq(rc, -EFBIG);
	snprintf(want, sizeof(want), "%s: is 1048576 bytes, smaller than the "
	    "configured size 2097152", path);
	ck_assert_str_eq(err, want);
	/* Left alone: not grown, not removed. */
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_size, 1 * MiB);
}
END_TEST

START_TEST(test_larger_used_up_to_size)
{
	struct storage st;
	struct stat sb;
	char path[PATH_MAX], err[512] = "";
	unsigned char b[2] = { 1, 2 };
	uint64_t doff, dlen;

	tmp_path(path, sizeof(path), "big.img");
	make_file(path, 3 * MiB);
	ck_assert_int_eq(storage_open(&st, path, 1 * MiB, err,
	    sizeof(err)), 0);
	ck_assert_uint_eq(st.st_size, 1 * MiB);
	ck_assert_int_eq(storage_write(&st, b, 1, 1 * MiB - 1), 0);
	ck_assert_int_eq(storage_write(&st, b, 2, 1 * MiB - 1), -EINVAL);
	ck_assert_int_eq(storage_write(&st, b, 1, 1 * MiB), -EINVAL);
	ck_assert_int_eq(storage_read(&st, b, 1, UINT64_MAX), -EINVAL);
	ck_assert_int_eq(storage_read(&st, b, UINT64_MAX, 1), -EINVAL);
	ck_assert_int_eq(storage_trim(&st, 2, 1 * MiB - 1), -EINVAL);

	/* Data past the volume's end is not the volume's. */
	ck_assert_int_eq(pwrite(st.st_fd, b, 2, (off_t)(2 * MiB)), 2);
	ck_assert_int_eq(storage_next_data(&st, 1 * MiB - 1, &doff, &dlen), 0);
	ck_assert_uint_le(doff + dlen, 1 * MiB);
	ck_assert_int_eq(storage_next_data(&st, 1 * MiB, &doff, &dlen), 1);
	storage_close(&st);

	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_size, 3 * MiB);
}
END_TEST

START_TEST(test_refuse_other_types)
{
	struct storage st;
	char path[PATH_MAX], err[512] = "";
	int rc;

	/* A directory. */
	rc = storage_open(&st, tmpdir, 1 * MiB, err, sizeof(err));
	ck_assert_int_lt(rc, 0);
	ck_assert_ptr_nonnull(strstr(err, tmpdir));
	ck_assert_ptr_nonnull(strstr(err, "not a regular file or block "
	    "device"));

	/* A FIFO: refused without being opened (which could block). */
	tmp_path(path, sizeof(path), "fifo");
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	err[0] = '\0';
	rc = storage_open(&st, path, 1 * MiB, err, sizeof(err));
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, path));

	/* A character device. */
	err[0] = '\0';
	rc = storage_open(&st, "/dev/null", 1 * MiB, err, sizeof(err));
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_eq(err, "/dev/null: not a regular file or block "
	    "device");

	/* A missing directory: the error names the path. */
	tmp_path(path, sizeof(path), "no/such/dir/vol.img");
	err[0] = '\0';
	rc = storage_open(&st, path, 1 * MiB, err, sizeof(err));
	ck_assert_int_eq(rc, -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

/* ------------------------------------------------------------------ I/O */

static struct storage io_st;
static unsigned char *io_model;

static void
io_open(uint64_t size)
{
	char path[PATH_MAX], err[512] = "";

	tmp_path(path, sizeof(path), "io.img");
	ck_assert_msg(storage_open(&io_st, path, size, err, sizeof(err)) == 0,
	    "storage_open: %s", err);
	io_model = calloc(1, size);
	ck_assert_ptr_nonnull(io_model);
}

static void
io_close(void)
{
	storage_close(&io_st);
	free(io_model);
	io_model = NULL;
}

START_TEST(test_roundtrip)
{
	io_open(4 * MiB);
	compare_image(&io_st, io_model);	/* a new volume reads zeros */
	io_roundtrip(&io_st, io_model);
	ck_assert_int_eq(storage_flush(&io_st), 0);
	io_close();
}
END_TEST

/*
 * storage_writev writes pieces of any size, empty ones among them (70 at
 * the start), over its 32 KiB chunks and past its 64 iovecs per call;
 * pieces past the span are refused.
 */
START_TEST(test_writev)
{
	static const size_t sizes[] = { 1, 4095, 0, 40000, 30000, 7, 65536 };
	struct iovec iov[500];
	unsigned char *src, *p;
	size_t total = 0;
	int i, n = 0;

	io_open(4 * MiB);
	for (i = 0; i < (int)(sizeof(sizes) / sizeof(sizes[0])); i++)
		total += sizes[i];
	total += 150 * 1000 + 250 * 100;
	ck_assert_ptr_nonnull(src = malloc(total));
	for (size_t k = 0; k < total; k++)
		src[k] = (unsigned char)(k * 131 + 7);
	for (i = 0; i < 70; i++) {
		iov[n].iov_base = src;
		iov[n++].iov_len = 0;
	}
	for (p = src, i = 0; i < (int)(sizeof(sizes) / sizeof(sizes[0]));
	    p += sizes[i++]) {
		iov[n].iov_base = p;
		iov[n++].iov_len = sizes[i];
	}
	for (i = 0; i < 150; i++, p += 1000) {
		iov[n].iov_base = p;
		iov[n++].iov_len = 1000;
	}
	for (i = 0; i < 250; i++, p += 100) {	/* 64 in a call: 6400 bytes */
		iov[n].iov_base = p;
		iov[n++].iov_len = 100;
	}
	ck_assert_int_eq(storage_writev(&io_st, iov, n, 12345), 0);
	memcpy(io_model + 12345, src, total);
	compare_image(&io_st, io_model);
	ck_assert_int_eq(storage_writev(&io_st, iov, n, 4 * MiB - 4096),
	    -EINVAL);
	compare_image(&io_st, io_model);
	free(src);
	io_close();
}
END_TEST

START_TEST(test_trim_zeros)
{
	struct stat before, after;

	io_open(4 * MiB);
	model_write(&io_st, io_model, 0, 2 * MiB, 300);
	ck_assert_int_eq(storage_flush(&io_st), 0);
	ck_assert_int_eq(fstat(io_st.st_fd, &before), 0);

	ck_assert_int_eq(storage_trim(&io_st, 1 * MiB, 512 * KiB), 0);
	memset(io_model + 512 * KiB, 0, 1 * MiB);
	compare_image(&io_st, io_model);
	ck_assert_int_eq(fstat(io_st.st_fd, &after), 0);
	ck_assert_msg(after.st_blocks < before.st_blocks,
	    "trim freed nothing: %lld -> %lld blocks",
	    (long long)before.st_blocks, (long long)after.st_blocks);
	ck_assert_int_eq(after.st_size, 4 * MiB);

	/* Odd edges: the partial blocks read back as zeros too. */
	ck_assert_int_eq(storage_trim(&io_st, 10001, 3), 0);
	memset(io_model + 3, 0, 10001);
	ck_assert_int_eq(storage_trim(&io_st, 4097, 1 * MiB + 511 * KiB +
	    5), 0);
	memset(io_model + 1 * MiB + 511 * KiB + 5, 0, 4097);
	compare_image(&io_st, io_model);
	io_close();
}
END_TEST

START_TEST(test_write_zeroes)
{
	struct stat before, after;

	io_open(4 * MiB);
	io_zeroes(&io_st, io_model);

	/*
	 * no_hole keeps the blocks allocated; without it they may go.
	 * Aligned spans, so the file system cannot round the difference away.
	 */
	model_write(&io_st, io_model, 2 * MiB, 1 * MiB, 400);
	ck_assert_int_eq(storage_flush(&io_st), 0);
	ck_assert_int_eq(fstat(io_st.st_fd, &before), 0);
	ck_assert_int_eq(storage_write_zeroes(&io_st, 256 * KiB, 2 * MiB, 1),
	    0);
	memset(io_model + 2 * MiB, 0, 256 * KiB);
	ck_assert_int_eq(fstat(io_st.st_fd, &after), 0);
	ck_assert_int_ge(after.st_blocks, before.st_blocks);

	ck_assert_int_eq(storage_write_zeroes(&io_st, 256 * KiB,
	    2 * MiB + 512 * KiB, 0), 0);
	memset(io_model + 2 * MiB + 512 * KiB, 0, 256 * KiB);
	ck_assert_int_eq(fstat(io_st.st_fd, &before), 0);
	ck_assert_int_lt(before.st_blocks, after.st_blocks);
	ck_assert_int_eq(before.st_size, 4 * MiB);
	compare_image(&io_st, io_model);
	io_close();
}
END_TEST

/*
 * tmpfs has no FALLOC_FL_ZERO_RANGE: write_zeroes with no_hole must fall
 * back to writing zeros there.
 */
START_TEST(test_write_zeroes_fallback)
{
	struct statfs sfs;
	char dir[] = "/dev/shm/duet-storage.XXXXXX";
	char path[sizeof(dir) + 16], err[512] = "", cmd[sizeof(dir) + 16];
	struct storage st;
	unsigned char *model;

	if (statfs("/dev/shm", &sfs) != 0 || sfs.f_type != TMPFS_MAGIC) {
		printf("check_storage: zeroes fallback: skipped: /dev/shm is "
		    "not tmpfs\n");
		return;
	}
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/io.img", dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	model = calloc(1, 4 * MiB);
	ck_assert_ptr_nonnull(model);
	if (storage_open(&st, path, 4 * MiB, err, sizeof(err)) != 0) {
		(void)system(cmd);
		ck_abort_msg("storage_open: %s", err);
	}
	/* Remove it now: the open descriptor keeps the file alive. */
	ck_assert_int_eq(system(cmd), 0);
	ck_assert_int_eq(fallocate(st.st_fd, FALLOC_FL_ZERO_RANGE |
	    FALLOC_FL_KEEP_SIZE, 0, 4096), -1);
	io_zeroes(&st, model);
	storage_close(&st);
	free(model);
}
END_TEST

START_TEST(test_flush)
{
	uint64_t before, after_first;

	io_open(1 * MiB);
	ck_assert_uint_eq(io_st.st_durable_ns, 0);
	before = now_ns();
	ck_assert_int_eq(storage_flush(&io_st), 0);
	/* The stamp is when the flush began: after before, before now. */
	after_first = io_st.st_durable_ns;
	ck_assert_uint_ge(after_first, before);
	ck_assert_uint_le(after_first, now_ns());
	model_write(&io_st, io_model, 12345, 6789, 500);
	ck_assert_int_eq(storage_flush(&io_st), 0);
	ck_assert_uint_gt(io_st.st_durable_ns, after_first);
	/* In the background: storage_close waits for it. A second call
	 * while one runs starts none (or the next, once it is done). */
	before = now_ns();
	storage_flush_bg(&io_st);
	storage_flush_bg(&io_st);
	io_close();
	ck_assert_uint_ge(io_st.st_durable_ns, before);
	ck_assert_int_eq(io_st.st_bg_state, 0);
	ck_assert_uint_eq(io_st.st_flush_errors, 0);
}
END_TEST

/* A flush publishes its start only once every flush that began before it
 * ended has ended, and none failed after it began; a failure is counted. */
START_TEST(test_flush_failure_and_overlap)
{
	struct storage_flushing other;
	uint64_t d;
	int fd;

	io_open(1 * MiB);
	ck_assert_int_eq(storage_flush(&io_st), 0);
	d = io_st.st_durable_ns;
	/* An older flush still runs: this one's success waits for it. */
	other.ticket = io_st.st_ticket++;
	other.next = NULL;
	io_st.st_running = &other;
	ck_assert_int_eq(storage_flush(&io_st), 0);
	ck_assert_uint_eq(io_st.st_durable_ns, d);
	ck_assert_uint_eq(io_st.st_cand_len, 1);
	/* A flush fails (here: no descriptor): counted. */
	fd = io_st.st_fd;
	io_st.st_fd = -1;
	ck_assert_int_eq(storage_flush(&io_st), -EBADF);
	io_st.st_fd = fd;
	ck_assert_uint_eq(io_st.st_flush_errors, 1);
	ck_assert_uint_eq(io_st.st_durable_ns, d);
	/* The older one ends: the waiting success began before the failure
	 * ended, so it is dropped; a new one after it publishes. */
	io_st.st_running = NULL;
	ck_assert_int_eq(storage_flush(&io_st), 0);
	ck_assert_uint_eq(io_st.st_cand_len, 0);
	ck_assert_uint_gt(io_st.st_durable_ns, io_st.st_fail_end);
	ck_assert_uint_gt(io_st.st_durable_ns, d);
	io_close();
}
END_TEST

START_TEST(test_next_data)
{
	uint64_t doff = 0, dlen = 0, end;

	io_open(8 * MiB);
	/* Nothing written: no data at all. */
	ck_assert_int_eq(storage_next_data(&io_st, 0, &doff, &dlen), 1);

	model_write(&io_st, io_model, 1 * MiB, 4 * KiB, 600);
	model_write(&io_st, io_model, 5 * MiB + 100, 8 * KiB, 601);
	ck_assert_int_eq(storage_flush(&io_st), 0);

	/* The first extent, with the hole before it skipped. */
	ck_assert_int_eq(storage_next_data(&io_st, 0, &doff, &dlen), 0);
	ck_assert_uint_gt(doff, 0);
	ck_assert_uint_le(doff, 1 * MiB);
	ck_assert_uint_ge(doff + dlen, 1 * MiB + 4 * KiB);
	ck_assert_uint_lt(doff + dlen, 5 * MiB);

	/* From inside an extent: from there. */
	ck_assert_int_eq(storage_next_data(&io_st, 1 * MiB + 10, &doff,
	    &dlen), 0);
	ck_assert_uint_eq(doff, 1 * MiB + 10);

	/* The second, skipping the hole between. */
	end = 1 * MiB + 4 * KiB;
	ck_assert_int_eq(storage_next_data(&io_st, end, &doff, &dlen), 0);
	ck_assert_uint_gt(doff, end);
	ck_assert_uint_le(doff, 5 * MiB + 100);
	ck_assert_uint_ge(doff + dlen, 5 * MiB + 100 + 8 * KiB);
	ck_assert_uint_le(doff + dlen, 8 * MiB);

	/* Then nothing, and nothing past the end. */
	ck_assert_int_eq(storage_next_data(&io_st, doff + dlen, &doff, &dlen),
	    1);
	ck_assert_int_eq(storage_next_data(&io_st, 8 * MiB, &doff, &dlen), 1);
	ck_assert_int_eq(storage_next_data(&io_st, UINT64_MAX, &doff, &dlen),
	    1);

	/* The last byte written: an extent clamped to the volume's end. */
	model_write(&io_st, io_model, 8 * MiB - 1, 1, 602);
	ck_assert_int_eq(storage_next_data(&io_st, 6 * MiB, &doff, &dlen), 0);
	ck_assert_uint_eq(doff + dlen, 8 * MiB);

	/* Walking the map visits every written byte. */
	{
		unsigned char *seen = calloc(1, 8 * MiB);
		uint64_t off = 0, i;

		ck_assert_ptr_nonnull(seen);
		while (storage_next_data(&io_st, off, &doff, &dlen) == 0) {
			ck_assert_uint_ge(doff, off);
			ck_assert_uint_gt(dlen, 0);
			memset(seen + doff, 1, dlen);
			off = doff + dlen;
		}
		for (i = 0; i < 8 * MiB; i++)
			if (io_model[i] != 0)
				ck_assert_msg(seen[i], "byte %llu missed",
				    (unsigned long long)i);
		free(seen);
	}
	io_close();
}
END_TEST

/* ------------------------------------------------------------ Blockdev */

static int
run_cmd(const char *cmd, char *out, size_t outlen)
{
	FILE *p;
	size_t n = 0;
	int status;

	out[0] = '\0';
	if ((p = popen(cmd, "r")) == NULL)
		return -1;
	while (n + 1 < outlen && fgets(out + n, (int)(outlen - n), p) != NULL)
		n = strlen(out);
	while (fgetc(p) != EOF)
		;
	status = pclose(p);
	out[strcspn(out, "\n")] = '\0';
	return status == 0 ? 0 : -1;
}

START_TEST(test_loop_device)
{
	struct storage st, st2;
	char backing[PATH_MAX], cmd[PATH_MAX + 64], dev[256], err[512] = "";
	char err2[512] = "", want[512];
	unsigned char *model;
	uint64_t doff, dlen;
	int rc_small, rc_main, rc_busy, rc_detach;

	if (geteuid() != 0) {
		printf("check_storage: loop device: skipped: not root\n");
		return;
	}
	tmp_path(backing, sizeof(backing), "loop.img");
	make_file(backing, 8 * MiB);
	snprintf(cmd, sizeof(cmd), "losetup -f --show '%s' 2>&1", backing);
	if (run_cmd(cmd, dev, sizeof(dev)) != 0 ||
	    strncmp(dev, "/dev/", 5) != 0) {
		printf("check_storage: loop device: skipped: losetup: %s\n",
		    dev);
		return;
	}

	/*
	 * Until the lazy detach below, nothing may abort the test (that
	 * would leak the device): results are kept and checked after.
	 */
	rc_small = storage_open(&st, dev, 16 * MiB, err, sizeof(err));
	rc_main = storage_open(&st, dev, 4 * MiB, err2, sizeof(err2));
	snprintf(cmd, sizeof(cmd), "losetup -d '%s' 2>&1", dev);
	rc_detach = run_cmd(cmd, want, sizeof(want));

	ck_assert_msg(rc_main == 0, "storage_open %s: %s", dev, err2);
	ck_assert_msg(rc_detach == 0, "losetup -d: %s", want);
	printf("check_storage: loop device: testing on %s\n", dev);

	ck_assert_int_eq(rc_small, -EFBIG);
	snprintf(want, sizeof(want), "%s: is 8388608 bytes, smaller than the "
	    "configured size 16777216", dev);
	ck_assert_str_eq(err, want);

	ck_assert_int_eq(st.st_blockdev, 1);
	ck_assert_uint_eq(st.st_size, 4 * MiB);

	/* Held exclusively: a second opener is refused. */
	rc_busy = storage_open(&st2, dev, 4 * MiB, err, sizeof(err));
	ck_assert_int_eq(rc_busy, -EBUSY);
	ck_assert_ptr_nonnull(strstr(err, dev));

	model = calloc(1, 4 * MiB);
	ck_assert_ptr_nonnull(model);
	compare_image(&st, model);
	io_roundtrip(&st, model);
	io_zeroes(&st, model);

	/* Trim is advisory: it succeeds and leaves the rest alone. */
	model_write(&st, model, 0, 4 * MiB, 700);
	ck_assert_int_eq(storage_trim(&st, 1 * MiB, 1 * MiB), 0);
	ck_assert_int_eq(storage_trim(&st, 5000, 3 * MiB + 7), 0);
	ck_assert_int_eq(storage_trim(&st, 100, 3 * MiB + 9000), 0);
	{
		static const struct { uint64_t off, len; } t[] = {
			{ 1 * MiB, 1 * MiB },
			{ 3 * MiB + 7, 5000 },
			{ 3 * MiB + 9000, 100 },
		};
		unsigned char *buf = malloc(4 * MiB);
		uint64_t i;
		size_t j;
		int in;

		ck_assert_ptr_nonnull(buf);
		ck_assert_int_eq(storage_read(&st, buf, 4 * MiB, 0), 0);
		for (i = 0; i < 4 * MiB; i++) {
			if (buf[i] == model[i])
				continue;
			for (in = 0, j = 0; j < sizeof(t) / sizeof(t[0]); j++)
				if (i >= t[j].off && i < t[j].off + t[j].len)
					in = 1;
			ck_assert_msg(in && buf[i] == 0, "byte %llu: 0x%02x, "
			    "want 0x%02x%s", (unsigned long long)i, buf[i],
			    model[i], in ? " or 0" : "");
		}
		free(buf);
	}
	ck_assert_int_eq(storage_flush(&st), 0);
	ck_assert_int_eq(storage_next_data(&st, 12345, &doff, &dlen), 0);
	ck_assert_uint_eq(doff, 12345);
	ck_assert_uint_eq(dlen, 4 * MiB - 12345);
	ck_assert_int_eq(storage_next_data(&st, 4 * MiB, &doff, &dlen), 1);
	storage_close(&st);
	free(model);
}
END_TEST

static Suite *
storage_suite(void)
{
	Suite *s = suite_create("storage");
	TCase *tc;

	tc = tcase_create("Open");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, storage_setup, storage_teardown);
	tcase_add_test(tc, test_create_sparse);
	tcase_add_test(tc, test_refuse_smaller);
	tcase_add_test(tc, test_larger_used_up_to_size);
	tcase_add_test(tc, test_refuse_other_types);
	suite_add_tcase(s, tc);

	tc = tcase_create("IO");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, storage_setup, storage_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_writev);
	tcase_add_test(tc, test_trim_zeros);
	tcase_add_test(tc, test_write_zeroes);
	tcase_add_test(tc, test_write_zeroes_fallback);
	tcase_add_test(tc, test_flush);
	tcase_add_test(tc, test_flush_failure_and_overlap);
	tcase_add_test(tc, test_next_data);
	suite_add_tcase(s, tc);

	tc = tcase_create("Blockdev");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_add_checked_fixture(tc, storage_setup, storage_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_loop_device);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(storage_suite());
	int failures;

	srunner_run_all(sr, CK_NORMAL);
	failures = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failures != 0;
}
