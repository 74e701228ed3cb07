/*
 * storage.h: the volume's backing store, a regular file or a block device.
 * Blocking calls, made from worker threads. Each returns 0 or -errno.
 * Short reads and writes are looped.
 */
#ifndef DUET_STORAGE_H
#define DUET_STORAGE_H

#include <sys/uio.h>

#include <pthread.h>
#include <stdint.h>

/* A flush running, on its caller's stack (st_running). */
struct storage_flushing {
	uint64_t ticket;	/* its place in the order flushes began */
	struct storage_flushing *next;
};

struct storage {
	int      st_fd;
	int      st_blockdev;	/* 1: block device */
	uint64_t st_size;	/* the configured volume size */
	char     st_path[4096];
	/*
	 * For the activity log (common/cr.h). A failed fdatasync may drop
	 * pages and report it to one caller only, so a flush that succeeds
	 * proves nothing until every flush that started before it ended has
	 * ended too, none of them failing: st_durable_ns (atomic) is then
	 * when it began. st_flush_errors (atomic) counts failures, each
	 * before any later publication.
	 */
	uint64_t st_durable_ns;
	uint64_t st_flush_errors;
	pthread_mutex_t st_flush_mu;	/* what follows, to st_bg */
	struct storage_flushing *st_running;	/* flushes running */
	uint64_t st_ticket;	/* flushes started so far */
	uint64_t st_fail_end;	/* now_ns when the last failure ended */
	struct { uint64_t need, start; } st_cand[32];	/* successes, in
				 * end order, waiting for tickets < need */
	unsigned st_cand_head, st_cand_len;
	pthread_t st_bg;	/* storage_flush_bg's thread */
	int      st_bg_state;	/* STORAGE_BG_*, atomic */
};

/*
 * Opens path read-write. A missing regular file is created sparse at size.
 * A file or device smaller than size is refused (-EFBIG... see errmsg); a
 * larger one is used up to size. On failure returns -errno and writes a
 * message naming the path into err[errlen].
 */
int storage_open(struct storage *st, const char *path, uint64_t size,
    char *err, size_t errlen);
void storage_close(struct storage *st);

int storage_read(struct storage *st, void *buf, uint64_t len, uint64_t off);
int storage_write(struct storage *st, const void *buf, uint64_t len,
    uint64_t off);
/* The same, from iovcnt pieces. */
int storage_writev(struct storage *st, const struct iovec *iov, int iovcnt,
    uint64_t off);
/* Punch a hole (BLKDISCARD on devices); reads back as zeros afterwards on
 * files. On devices whose discard does not zero, trim is advisory. */
int storage_trim(struct storage *st, uint64_t len, uint64_t off);
/* Zero the span: FALLOC_FL_ZERO_RANGE (or punch when !no_hole), BLKZEROOUT
 * on devices; falls back to writing zeros where those are unsupported. */
int storage_write_zeroes(struct storage *st, uint64_t len, uint64_t off,
    int no_hole);
int storage_flush(struct storage *st);	/* fdatasync */
/*
 * A storage_flush on a thread of its own, unless the last one still runs;
 * its result shows in st_durable_ns and st_flush_errors only. Called from one thread (the
 * event thread); storage_close waits for it.
 */
void storage_flush_bg(struct storage *st);
/* st (a struct storage *): storage_flush_bg (0), or storage_flush (wait:
 * 0 or -1): the activity log's flush, for cr_set_durable. */
int storage_flush_al(void *st, int wait);
/* Waits for storage_flush_bg's flush, if one runs. */
void storage_flush_wait(struct storage *st);

/* Data/hole map for files (SEEK_DATA/SEEK_HOLE): the next data extent at or
 * after off, as [*data_off, *data_off + *data_len). Returns 0, 1 when no data
 * remains, or -errno. Devices report everything as data. */
int storage_next_data(struct storage *st, uint64_t off, uint64_t *data_off,
    uint64_t *data_len);

#endif
