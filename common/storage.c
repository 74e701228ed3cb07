/*
 * storage.c: the volume's backing store (see storage.h).
 *
 * Why it is built this way: every caller is a worker thread doing blocking
 * I/O on one shared descriptor, so only positional calls (pread/pwrite,
 * fallocate, ioctl ranges) are used and nothing here keeps per-call state
 * but storage_flush's record of which flushes proved durability (under
 * st_flush_mu, never held across the fdatasync); any number of threads may
 * call these at once on one struct storage (storage_flush_bg excepted: one
 * caller, and a thread of its own). The
 * volume is st_size bytes even when the file or device is larger, and every
 * span is checked against that before it reaches the kernel.
 *
 * Regular files get hole punching and SEEK_DATA; block devices get the
 * BLK* ioctls. Where the kernel or file system lacks an operation, zeroing
 * falls back to writing zeros (a zeroing request must zero), while a trim on
 * a device is advisory and may do nothing.
 *
 * Block devices are opened O_EXCL: the kernel then refuses a device that is
 * mounted or held by another exclusive opener (a second daemon, mdraid),
 * which would otherwise be silently overwritten.
 */
#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <linux/falloc.h>
#include <linux/fs.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/storage.h"
#include "common/util.h"

/* Largest single pread/pwrite: well below SSIZE_MAX and Linux's 2 GiB cap. */
#define STORAGE_IO_MAX		(1u << 30)
/*
 * Largest single pwrite. The page cache sizes a new folio by the write
 * that creates it, and on Linux 6.16+ ext4 a later 4 KiB write walks every
 * block of its folio: after a resync had written 1 MiB pieces, a 4 KiB
 * write cost about 10 us instead of 2 (4 MiB pieces: 17 us). 32 KiB
 * pieces keep later small writes at about 3 us, for 32 calls per MiB.
 */
#define STORAGE_WRITE_CHUNK	(32u * 1024)
#define STORAGE_WRITE_IOV	64	/* iovecs per pwritev */
/* The fallback zero writer's buffer. */
#define STORAGE_ZERO_CHUNK	(64u * 1024)

static const unsigned char storage_zeros[STORAGE_ZERO_CHUNK];

/* Checks [off, off + len) against the volume, without overflow. */
static int
storage_span_ok(const struct storage *st, uint64_t len, uint64_t off)
{
	return off <= st->st_size && len <= st->st_size - off;
}

static int
storage_refuse_small(const char *path, uint64_t have, uint64_t want,
    char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: is %" PRIu64 " bytes, smaller than the "
	    "configured size %" PRIu64, path, have, want);
	return -EFBIG;
}

int
storage_open(struct storage *st, const char *path, uint64_t size,
    char *err, size_t errlen)
{
	struct stat sb;
	uint64_t devsize;
	int fd = -1, created = 0, rc;

	memset(st, 0, sizeof(*st));
	st->st_fd = -1;
	VERIFY(pthread_mutex_init(&st->st_flush_mu, NULL) == 0);
	if (strlen(path) >= sizeof(st->st_path)) {
		snprintf(err, errlen, "%.64s...: path too long", path);
		return -ENAMETOOLONG;
	}

	/*
	 * Look before opening: opening a character device or a FIFO can
	 * have side effects of its own (a tape rewinds, a FIFO blocks).
	 */
	if (stat(path, &sb) == -1) {
		if (errno != ENOENT) {
			rc = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			return rc;
		}
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd == -1) {
			rc = -errno;
			snprintf(err, errlen, "%s: cannot create: %s", path,
			    strerror(errno));
			return rc;
		}
		created = 1;
		if (ftruncate(fd, (off_t)size) == -1) {
			rc = -errno;
			snprintf(err, errlen, "%s: cannot size to %" PRIu64
			    " bytes: %s", path, size, strerror(errno));
			goto fail;
		}
	} else if (S_ISREG(sb.st_mode)) {
		fd = open(path, O_RDWR | O_CLOEXEC);
	} else if (S_ISBLK(sb.st_mode)) {
		fd = open(path, O_RDWR | O_EXCL | O_CLOEXEC);
	} else {
		snprintf(err, errlen, "%s: not a regular file or block device",
		    path);
		return -EINVAL;
	}
	if (fd == -1) {
		rc = -errno;
		if (errno == EBUSY)
			snprintf(err, errlen, "%s: device is in use (mounted "
			    "or opened exclusively elsewhere)", path);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}

	/* What we opened, which may not be what stat saw a moment ago. */
	if (fstat(fd, &sb) == -1) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (S_ISREG(sb.st_mode)) {
		if ((uint64_t)sb.st_size < size) {
			rc = storage_refuse_small(path, (uint64_t)sb.st_size,
			    size, err, errlen);
			goto fail;
		}
		st->st_blockdev = 0;
	} else if (S_ISBLK(sb.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &devsize) == -1) {
			rc = -errno;
			snprintf(err, errlen, "%s: BLKGETSIZE64: %s", path,
			    strerror(errno));
			goto fail;
		}
		if (devsize < size) {
			rc = storage_refuse_small(path, devsize, size, err,
			    errlen);
			goto fail;
		}
		st->st_blockdev = 1;
	} else {
		snprintf(err, errlen, "%s: not a regular file or block device",
		    path);
		rc = -EINVAL;
		goto fail;
	}

	st->st_fd = fd;
	st->st_size = size;
	snprintf(st->st_path, sizeof(st->st_path), "%s", path);
	return 0;
fail:
	if (created)
		(void)unlink(path);
	close(fd);
	return rc;
}

enum { STORAGE_BG_IDLE, STORAGE_BG_RUNNING, STORAGE_BG_DONE };

static void *
flush_bg(void *arg)
{
	struct storage *st = arg;

	(void)storage_flush(st);	/* its result: st_flush_errors */
	__atomic_store_n(&st->st_bg_state, STORAGE_BG_DONE, __ATOMIC_RELEASE);
	return NULL;
}

void
storage_flush_bg(struct storage *st)
{
	switch (__atomic_load_n(&st->st_bg_state, __ATOMIC_ACQUIRE)) {
	case STORAGE_BG_RUNNING:
		return;
	case STORAGE_BG_DONE:
		(void)pthread_join(st->st_bg, NULL);
		break;
	}
	st->st_bg_state = STORAGE_BG_RUNNING;
	if (pthread_create(&st->st_bg, NULL, flush_bg, st) != 0)
		st->st_bg_state = STORAGE_BG_IDLE;	/* the next call retries */
}

int
storage_flush_al(void *st, int wait)
{
	if (!wait) {
		storage_flush_bg(st);
		return 0;
	}
	return storage_flush(st) == 0 ? 0 : -1;
}

void
storage_flush_wait(struct storage *st)
{
	if (st->st_bg_state != STORAGE_BG_IDLE)
		(void)pthread_join(st->st_bg, NULL);
	st->st_bg_state = STORAGE_BG_IDLE;
}

void
storage_close(struct storage *st)
{
	storage_flush_wait(st);
	if (st->st_fd != -1)
		(void)close(st->st_fd);
	st->st_fd = -1;
}

int
storage_read(struct storage *st, void *buf, uint64_t len, uint64_t off)
{
	unsigned char *p = buf;
	ssize_t n;

	if (!storage_span_ok(st, len, off))
		return -EINVAL;
	while (len > 0) {
		n = pread(st->st_fd, p, MIN(len, STORAGE_IO_MAX), (off_t)off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)	/* truncated under us */
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

int
storage_write(struct storage *st, const void *buf, uint64_t len,
    uint64_t off)
{
	struct iovec v = { (void *)(uintptr_t)buf, len };

	return storage_writev(st, &v, 1, off);
}

int
storage_writev(struct storage *st, const struct iovec *iov, int iovcnt,
    uint64_t off)
{
	struct iovec v[STORAGE_WRITE_IOV];
	uint64_t len = 0;
	size_t skip = 0, want, got, take;	/* skip: of iov[0], written */
	ssize_t n;
	int i, nv;

	for (i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (!storage_span_ok(st, len, off))
		return -EINVAL;
	while (len > 0) {
		/* Past the written pieces and empty ones: len > 0 says a
		 * piece with bytes is left. */
		for (; skip >= iov[0].iov_len; iovcnt--, iov++)
			skip -= iov[0].iov_len;
		want = (size_t)MIN(len, STORAGE_WRITE_CHUNK);
		for (i = nv = 0, got = 0; i < iovcnt && got < want &&
		    nv < STORAGE_WRITE_IOV; i++) {
			size_t from = i == 0 ? skip : 0;

			if (iov[i].iov_len == from)
				continue;
			take = MIN(iov[i].iov_len - from, want - got);
			v[nv].iov_base = (char *)iov[i].iov_base + from;
			v[nv++].iov_len = take;
			got += take;
		}
		if ((n = pwritev(st->st_fd, v, nv, (off_t)off)) == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		off += (uint64_t)n;
		len -= (uint64_t)n;
		skip += (size_t)n;
	}
	return 0;
}

/* The last resort for zeroing: plain writes from a static zero buffer. */
static int
storage_write_zero_buf(struct storage *st, uint64_t len, uint64_t off)
{
	uint64_t n;
	int rc;

	while (len > 0) {
		n = MIN(len, (uint64_t)sizeof(storage_zeros));
		if ((rc = storage_write(st, storage_zeros, n, off)) != 0)
			return rc;
		off += n;
		len -= n;
	}
	return 0;
}

/* An operation the file system or driver does not offer (as opposed to a
 * real failure, which is passed up). */
static int
storage_unsupported(int e)
{
	return e == EOPNOTSUPP || e == ENOTTY || e == EINVAL || e == ENOSYS;
}

static int
storage_fallocate(struct storage *st, int mode, uint64_t len, uint64_t off)
{
	for (;;) {
		if (fallocate(st->st_fd, mode, (off_t)off, (off_t)len) == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

/* A device range ioctl (BLKDISCARD, BLKZEROOUT) on [off, off + len). */
static int
storage_blkrange(struct storage *st, unsigned long req, uint64_t len,
    uint64_t off)
{
	uint64_t range[2] = { off, len };

	for (;;) {
		if (ioctl(st->st_fd, req, range) == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

/* The device's logical block size: the alignment its range ioctls need. */
static uint64_t
storage_sector(struct storage *st)
{
	int ssz;

	if (ioctl(st->st_fd, BLKSSZGET, &ssz) == -1 || ssz < 512 ||
	    (ssz & (ssz - 1)) != 0)
		return 512;
	return (uint64_t)ssz;
}

int
storage_trim(struct storage *st, uint64_t len, uint64_t off)
{
	uint64_t sec, start, end;
	int rc;

	if (!storage_span_ok(st, len, off))
		return -EINVAL;
	if (len == 0)
		return 0;
	if (!st->st_blockdev) {
		/* The header promises zeros after a trim on files. */
		rc = storage_fallocate(st,
		    FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, len, off);
		if (rc != 0 && storage_unsupported(-rc))
			rc = storage_write_zero_buf(st, len, off);
		return rc;
	}
	/* Advisory on devices: discard only the whole sectors inside. */
	sec = storage_sector(st);
	start = (off + sec - 1) & ~(sec - 1);
	end = (off + len) & ~(sec - 1);
	if (end <= start)
		return 0;
	rc = storage_blkrange(st, BLKDISCARD, end - start, start);
	if (rc == -EOPNOTSUPP)
		return 0;
	return rc;
}

int
storage_write_zeroes(struct storage *st, uint64_t len, uint64_t off,
    int no_hole)
{
	uint64_t sec, start, end;
	int rc;

	if (!storage_span_ok(st, len, off))
		return -EINVAL;
	if (len == 0)
		return 0;
	if (!st->st_blockdev) {
		rc = -EOPNOTSUPP;
		if (!no_hole)
			rc = storage_fallocate(st, FALLOC_FL_PUNCH_HOLE |
			    FALLOC_FL_KEEP_SIZE, len, off);
		if (rc != 0 && storage_unsupported(-rc))
			rc = storage_fallocate(st, FALLOC_FL_ZERO_RANGE |
			    FALLOC_FL_KEEP_SIZE, len, off);
		if (rc != 0 && storage_unsupported(-rc))
			rc = storage_write_zero_buf(st, len, off);
		return rc;
	}

	/*
	 * BLKZEROOUT takes whole logical blocks and never unmaps (the kernel
	 * passes BLKDEV_ZERO_NOUNMAP), so no_hole holds either way. Partial
	 * blocks at the edges are written as zeros.
	 */
	sec = storage_sector(st);
	start = (off + sec - 1) & ~(sec - 1);
	end = (off + len) & ~(sec - 1);
	if (end <= start)
		return storage_write_zero_buf(st, len, off);
	if (start > off &&
	    (rc = storage_write_zero_buf(st, start - off, off)) != 0)
		return rc;
	if (off + len > end &&
	    (rc = storage_write_zero_buf(st, off + len - end, end)) != 0)
		return rc;
	rc = storage_blkrange(st, BLKZEROOUT, end - start, start);
	if (rc != 0 && storage_unsupported(-rc))
		rc = storage_write_zero_buf(st, end - start, start);
	return rc;
}

/* Publishes the successes that no running flush can still contradict. */
static void
flush_settle(struct storage *st)
{
	uint64_t minrun = UINT64_MAX;
	struct storage_flushing *f;

	for (f = st->st_running; f != NULL; f = f->next)
		minrun = MIN(minrun, f->ticket);
	while (st->st_cand_len > 0 &&
	    st->st_cand[st->st_cand_head].need <= minrun) {
		uint64_t start = st->st_cand[st->st_cand_head].start;

		/* A failure that ended after it began may have been of its
		 * pages. */
		if (start > st->st_fail_end && start > st->st_durable_ns)
			__atomic_store_n(&st->st_durable_ns, start,
			    __ATOMIC_RELEASE);
		st->st_cand_head = (st->st_cand_head + 1) %
		    ARRAY_SIZE(st->st_cand);
		st->st_cand_len--;
	}
}

int
storage_flush(struct storage *st)
{
	struct storage_flushing self, **pp;
	uint64_t start;
	int rc = 0;

	VERIFY(pthread_mutex_lock(&st->st_flush_mu) == 0);
	self.ticket = st->st_ticket++;
	self.next = st->st_running;
	st->st_running = &self;
	start = now_ns();
	VERIFY(pthread_mutex_unlock(&st->st_flush_mu) == 0);
	if (fdatasync(st->st_fd) == -1)
		rc = -errno;
	VERIFY(pthread_mutex_lock(&st->st_flush_mu) == 0);
	for (pp = &st->st_running; *pp != &self; pp = &(*pp)->next)
		;
	*pp = self.next;
	if (rc != 0) {
		st->st_fail_end = now_ns();
		__atomic_add_fetch(&st->st_flush_errors, 1, __ATOMIC_RELEASE);
	} else if (st->st_cand_len < ARRAY_SIZE(st->st_cand)) {
		/* (When full, this one is skipped: later ones publish.) */
		unsigned i = (st->st_cand_head + st->st_cand_len++) %
		    ARRAY_SIZE(st->st_cand);

		st->st_cand[i].need = st->st_ticket;
		st->st_cand[i].start = start;
	}
	flush_settle(st);
	VERIFY(pthread_mutex_unlock(&st->st_flush_mu) == 0);
	return rc;
}

int
storage_next_data(struct storage *st, uint64_t off, uint64_t *data_off,
    uint64_t *data_len)
{
	off_t d, h;

	if (off >= st->st_size)
		return 1;
	if (st->st_blockdev) {
		*data_off = off;
		*data_len = st->st_size - off;
		return 0;
	}
	/*
	 * lseek moves the shared file offset, but nothing here reads it
	 * back: the results are the return values, and all I/O is
	 * positional, so concurrent callers do not disturb each other.
	 */
	d = lseek(st->st_fd, (off_t)off, SEEK_DATA);
	if (d == -1) {
		if (errno == ENXIO)
			return 1;
		if (errno == EINVAL) {	/* no SEEK_DATA here: all data */
			*data_off = off;
			*data_len = st->st_size - off;
			return 0;
		}
		return -errno;
	}
	if ((uint64_t)d >= st->st_size)
		return 1;
	h = lseek(st->st_fd, d, SEEK_HOLE);
	if (h == -1) {
		if (errno != ENXIO)
			return -errno;
		h = (off_t)st->st_size;	/* truncated meanwhile */
	}
	*data_off = (uint64_t)d;
	*data_len = MIN((uint64_t)h, st->st_size) - (uint64_t)d;
	return 0;
}
