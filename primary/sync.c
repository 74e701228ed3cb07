/*
 * sync.c: the full sync that brings a new mirror session up to date while
 * clients keep writing.
 *
 * The volume is walked in SYNC_CHUNK pieces. Each piece is a request of
 * its own (TG_OTHER) with a sequence number from the same counter as the
 * clients' writes, so the engine orders it like a write: it reads the
 * piece after every earlier overlapping write is applied locally and
 * before any later one, and its frame reaches the mirror in that same
 * sequence position (repl.c's send queue). A client write racing the copy
 * can therefore never be overwritten by an older copy of its extent.
 *
 * Holes (SEEK_HOLE on files) are not read; a piece that is all holes, or
 * all zero bytes, travels as WRITE_ZEROES, a 48-byte frame.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/notify.h"
#include "common/util.h"
#include "primary/primary.h"

#define SYNC_CHUNK	(1u << 20)
#define SYNC_DEPTH	8		/* chunks in flight */

struct sync {
	int		sy_running;
	uint64_t	sy_cursor;	/* next offset to queue */
	unsigned	sy_outstanding;
	uint64_t	sy_data_bytes;	/* sent as data */
	uint64_t	sy_start_ns;
	uint64_t	sy_gen;		/* session the chunks belong to */
	uint64_t	sy_done;	/* bytes applied on the mirror */
	int		sy_complete;	/* the mirror matched at some point */
};

int
sync_init(struct primary *p)
{
	p->p_sync = calloc(1, sizeof(*p->p_sync));
	return p->p_sync == NULL ? -ENOMEM : 0;
}

void
sync_fini(struct primary *p)
{
	FREE_AND_NULL(&p->p_sync);
}

static int
all_zero(const uint8_t *b, uint64_t n)
{
	static const uint8_t zero[4096];

	while (n > 0) {
		uint64_t k = MIN(n, sizeof(zero));
		if (memcmp(b, zero, k) != 0)
			return 0;
		b += k;
		n -= k;
	}
	return 1;
}

/* Worker thread. */
int
sync_read_piece(struct primary *p, struct preq *r, uint64_t off,
    uint64_t len, void *buf)
{
	uint64_t pos = off, end = off + len, doff, dlen;
	uint8_t *b = buf;
	int rc;

	while (pos < end) {
		rc = storage_next_data(&p->p_st, pos, &doff, &dlen);
		if (rc < 0)
			return rc;
		if (rc == 1 || doff >= end) {
			memset(b + (pos - off), 0, end - pos);
			break;
		}
		if (doff > pos)
			memset(b + (pos - off), 0, doff - pos);
		dlen = MIN(dlen, end - doff);
		if ((rc = storage_read(&p->p_st, b + (doff - off), dlen, doff)) != 0)
			return rc;
		if (!all_zero(b + (doff - off), dlen))
			__atomic_store_n(&r->pr_nonzero, 1, __ATOMIC_RELEASE);
		pos = doff + dlen;
	}
	return 0;
}

static void sync_pump(struct primary *p);

/* A chunk is answered: applied on the mirror, or lost with it. */
static void
sync_chunk_done(struct preq *r)
{
	struct primary *p = r->pr_p;
	struct sync *sy = p->p_sync;
	int current = (uint64_t)(uintptr_t)r->pr_arg == sy->sy_gen;
	int failed = (r->pr_state & PR_LOST) || r->pr_local_status != 0;

	if (current) {
		sy->sy_outstanding--;
		if (!failed)
			sy->sy_done += r->pr_op.len;
		if (r->pr_nonzero)
			sy->sy_data_bytes += r->pr_op.len;
	}
	if (r->pr_local_status != 0)
		log_warnx("sync: reading %llu+%llu: %s; sync stopped",
		    (unsigned long long)r->pr_op.off,
		    (unsigned long long)r->pr_op.len,
		    strerror(-r->pr_local_status));
	io_free(p, r);
	if (!current)
		return;		/* from a session that is gone */
	if (failed) {
		sy->sy_running = 0;
		return;
	}
	sync_pump(p);
}

static void
sync_pump(struct primary *p)
{
	struct sync *sy = p->p_sync;
	struct preq *r;
	uint64_t len;

	while (sy->sy_running && sy->sy_outstanding < SYNC_DEPTH &&
	    sy->sy_cursor < p->p_cfg.vol_size && repl_connected(p) &&
	    repl_window_open(p) && !p->p_stopping) {
		len = MIN(SYNC_CHUNK, p->p_cfg.vol_size - sy->sy_cursor);
		if ((r = io_alloc(p, len)) == NULL)
			break;	/* retried when a chunk completes */
		r->pr_op.type = TG_OTHER;
		r->pr_op.off = sy->sy_cursor;
		r->pr_op.len = len;
		r->pr_done = sync_chunk_done;
		r->pr_arg = (void *)(uintptr_t)sy->sy_gen;
		sy->sy_cursor += len;
		sy->sy_outstanding++;
		io_submit(p, r);
	}
	if (sy->sy_running && sy->sy_outstanding == 0 &&
	    sy->sy_cursor >= p->p_cfg.vol_size) {
		uint64_t ms = (now_ns() - sy->sy_start_ns) / 1000000;

		sy->sy_running = 0;
		sy->sy_complete = 1;
		repl_in_sync(p);
		notify_status("mirror up to date");
		log_info("sync complete: %llu bytes of data, %llu zero, in "
		    "%llu.%03llu s; the mirror is up to date",
		    (unsigned long long)sy->sy_data_bytes,
		    (unsigned long long)(p->p_cfg.vol_size - sy->sy_data_bytes),
		    (unsigned long long)(ms / 1000),
		    (unsigned long long)(ms % 1000));
	}
}

void
sync_start(struct primary *p)
{
	struct sync *sy = p->p_sync;

	/* Chunks of an earlier session still out are counted off by gen. */
	sy->sy_gen++;
	sy->sy_running = 1;
	sy->sy_cursor = 0;
	sy->sy_outstanding = 0;
	sy->sy_data_bytes = 0;
	sy->sy_done = 0;
	sy->sy_complete = 0;
	sy->sy_start_ns = now_ns();
	log_info("sync: copying the volume to the mirror (%llu bytes)",
	    (unsigned long long)p->p_cfg.vol_size);
	sync_pump(p);
}

void
sync_kick(struct primary *p)
{
	if (p->p_sync->sy_running)
		sync_pump(p);
}

/*
 * The sync's part of "status". Without change records, a mirror that is
 * not connected, or not yet through a full sync, may lack anything: all of
 * the volume counts as out of sync until a sync completes.
 */
void
sync_status(struct primary *p, json_t *o)
{
	struct sync *sy = p->p_sync;
	uint64_t size = p->p_cfg.vol_size, oos;
	double secs = (double)(now_ns() - sy->sy_start_ns) / 1e9;
	double rate = sy->sy_running && secs > 0 ? (double)sy->sy_done / secs : 0;

	oos = !repl_connected(p) ? size : sy->sy_complete ? 0 : size - sy->sy_done;
	json_object_set_new(o, "out_of_sync_bytes", json_integer((json_int_t)oos));
	json_object_set_new(o, "resync", json_pack("{s:b, s:f, s:I, s:o}",
	    "running", sy->sy_running,
	    "progress", size ? (double)sy->sy_done / (double)size : 1.0,
	    "rate_bytes_per_s", (json_int_t)rate,
	    "eta_s", sy->sy_running && rate > 0 ?
	    json_integer((json_int_t)((double)(size - sy->sy_done) / rate)) :
	    json_null()));
}
