/*
 * io.c: a request's life on the primary.
 *
 *   io_submit:  sequence number; frontier = every request numbered at or
 *               below it has been answered (DESIGN.md invariant 2); into
 *               the local engine (which orders overlapping requests, the
 *               same order the mirror will use); to the mirror when it is
 *               connected and the request writes.
 *   countdown:  the client is answered once the local side is done and
 *               the mirror has said what the mode needs (hastd's
 *               hio_countdown): sync waits for APPLIED, memsync for
 *               RECEIVED (APPLIED for FUA and FLUSH: those promise
 *               durability), async for the frame being queued. A lost
 *               mirror counts as done: the client keeps working, the
 *               write's extents are recorded, and the resync on reconnect
 *               copies them.
 *   records:    a write holds the activity log (io_cr_begin) until both
 *               sides are done with it.
 *
 * The incomplete list (p_inc_*) holds every request not yet answered, in
 * sequence order; its head gives the frontier. Requests leave it when they
 * are answered.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/apply.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/util.h"
#include "primary/primary.h"

/*
 * The free list keeps requests of up to IO_POOL_PAYLOAD bytes of data, as
 * many as the in-flight window (primary.max_inflight): a steady load of
 * small requests then allocates nothing.
 */
#define IO_POOL_PAYLOAD	4096

struct preq *
io_alloc(struct primary *p, uint64_t len)
{
	struct preq *r;

	if ((r = pool_get(&p->p_pool, sizeof(*r) + len)) == NULL)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->pr_p = p;
	r->pr_size = sizeof(*r) + len;
	p->p_nreq++;
	return r;
}

void
io_free(struct primary *p, struct preq *r)
{
	p->p_nreq--;
	pool_put(&p->p_pool, r, r->pr_size);
}

/*
 * The frontier of the newest request (already on the incomplete list):
 * every request numbered below the oldest unanswered one was answered.
 */
static uint64_t
io_frontier(struct primary *p)
{
	return p->p_inc_head->pr_op.seq - 1;
}

uint64_t
io_frontier_now(struct primary *p)
{
	return p->p_inc_head != NULL ? p->p_inc_head->pr_op.seq - 1 : p->p_seq;
}

static void
inc_remove(struct primary *p, struct preq *r)
{
	if (r->pr_inc_prev != NULL)
		r->pr_inc_prev->pr_inc_next = r->pr_inc_next;
	else
		p->p_inc_head = r->pr_inc_next;
	if (r->pr_inc_next != NULL)
		r->pr_inc_next->pr_inc_prev = r->pr_inc_prev;
	else
		p->p_inc_tail = r->pr_inc_prev;
	r->pr_inc_prev = r->pr_inc_next = NULL;
}

static void io_finish(struct primary *, struct preq *);

/* A mirror read for a client read that failed here: its data becomes
 * the client's answer. */
static void
remote_read_done(struct preq *rr)
{
	struct primary *p = rr->pr_p;
	struct preq *r = rr->pr_arg;

	if (!(rr->pr_state & PR_LOST)) {
		memcpy(r->pr_data, rr->pr_data, r->pr_op.len);
		r->pr_local_status = 0;
		p->p_remote_reads++;
	}
	io_free(p, rr);
	io_finish(p, r);
}

/*
 * A client read failed on the local disk (or the disk failed before):
 * the disk is failed from now on (DESIGN.md: reads are served by the
 * mirror, writes go to it alone), and an up-to-date mirror is asked for
 * the data. Returns 1 if r waits for it, 0 if r must fail.
 */
void
io_disk_failed(struct primary *p, const struct preq *r)
{
	struct cr *c = &p->p_cr;

	if (p->p_disk_failed)
		return;
	__atomic_store_n(&p->p_disk_failed, 1, __ATOMIC_RELAXED);
	repl_disk_failed(p);
	log_warnx("storage: reading %llu+%llu: %s; the disk is failed: "
	    "reads are served by the mirror and writes go to it alone; this "
	    "disk's data is stale from now on: fail over to the mirror",
	    (unsigned long long)r->pr_op.off, (unsigned long long)r->pr_op.len,
	    strerror(-r->pr_local_status));
	notify_status("disk failed; serving from the mirror");
	/* Recorded, so that duet-primary never serves this disk again. */
	c->c_m.md_flags |= META_F_DISK_FAILED;
	cr_commit(c);
}

static int
read_from_mirror(struct primary *p, struct preq *r)
{
	struct cr *c = &p->p_cr;
	uint64_t e, ext = p->p_cfg.extent_size;
	struct preq *rr;

	io_disk_failed(p, r);
	if (!repl_connected(p) || !sync_mirror_current(p))
		return 0;
	/* An extent the mirror is known to lack (or to differ in) cannot
	 * stand in for ours. */
	for (e = r->pr_op.off / ext; e * ext < r->pr_op.off + r->pr_op.len; e++)
		if (cr_test(c, e))
			return 0;
	if ((rr = io_alloc(p, r->pr_op.len)) == NULL)
		return 0;
	rr->pr_op.type = TG_OTHER;
	rr->pr_op.off = r->pr_op.off;
	rr->pr_op.len = r->pr_op.len;
	rr->pr_kind = SY_RREAD;
	rr->pr_done = remote_read_done;
	rr->pr_arg = r;
	io_submit(p, rr);
	return 1;
}

/* Answers r once both sides are done and its frame (if any) has left. */
static void
io_maybe_finish(struct primary *p, struct preq *r)
{
	if (!(r->pr_state & PR_LOCAL_DONE) || !(r->pr_state & PR_REMOTE_DONE))
		return;
	if ((r->pr_state & PR_REPLICATE) && !(r->pr_state & PR_SENT))
		return;
	if (r->pr_local_status == -EIO && r->pr_op.type == TG_READ &&
	    r->pr_done == NULL && read_from_mirror(p, r))
		return;
	io_finish(p, r);
}

static void
io_finish(struct primary *p, struct preq *r)
{
	/* With the disk failed the mirror holds the only copy: a change, or
	 * a FLUSH, that it did not apply happened nowhere. */
	if (p->p_disk_failed && (r->pr_state & PR_LOST) &&
	    r->pr_local_status == 0 && r->pr_op.type != TG_READ &&
	    r->pr_op.type != TG_OTHER)
		r->pr_local_status = -EIO;
	if (r->pr_local_status != 0) {
		r->pr_status = r->pr_local_status == -ENOSPC ? ENOSPC : EIO;
		p->p_errors++;
	}
	inc_remove(p, r);
	if (r->pr_done != NULL)
		r->pr_done(r);
	else
		nbd_reply(r);
}

void
io_remote_done(struct primary *p, struct preq *r)
{
	r->pr_state |= PR_REMOTE_DONE;
	io_maybe_finish(p, r);
}

void
io_sent(struct primary *p, struct preq *r)
{
	r->pr_state |= PR_SENT;
	io_maybe_finish(p, r);
}

/* ---- the change record -------------------------------------------------- */

/*
 * Drops one of r's two AL references. mark: the mirror does not have r
 * (lost, refused, or never sent): record its extents first.
 */
void
io_cr_release(struct primary *p, struct preq *r, int mark)
{
	if (r->pr_cr == PR_CR_NONE)
		return;
	if (mark)
		cr_mark(&p->p_cr, r->pr_op.off, r->pr_op.len);
	cr_end(&p->p_cr, r->pr_op.off, r->pr_op.len, 1,
	    r->pr_cr == PR_CR_TRACKED);
}

/*
 * Before a write is issued: its extents are hot in the AL (on disk), and
 * without a mirror session they are recorded as changed. The first such
 * write after the mirror had our generation starts a new one, so that a
 * mirror promoted meanwhile is told apart from one that merely fell
 * behind (split brain). 0, or -1: the write must fail.
 */
static int
io_cr_begin(struct primary *p, struct preq *r)
{
	struct tg_op *op = &r->pr_op;
	struct cr *c = &p->p_cr;
	int rc;

	if ((rc = cr_begin(c, op->off, op->len, 2)) < 0)
		return -1;
	r->pr_cr = rc == 0 ? PR_CR_TRACKED : PR_CR_MARKED;
	if (repl_connected(p))
		return 0;	/* the mirror's reference goes with its ack */
	if (!repl_session(p) && (c->c_m.md_flags & META_F_PEER_HAS_GEN)) {
		log_info("writing without the mirror: new data generation");
		if (cr_new_gen(c) != 0)
			return -1;
	}
	io_cr_release(p, r, 1);
	return 0;
}

/* ---- the local engine ------------------------------------------------- */

static int
io_apply(void *ctx, struct tg_op *op, uint64_t off, uint64_t len, void *buf)
{
	struct primary *p = ctx;

	/* A failed disk is not touched: the mirror has the data. */
	if (__atomic_load_n(&p->p_disk_failed, __ATOMIC_RELAXED))
		return op->type == TG_READ || op->type == TG_OTHER ? -EIO : 0;
	if (op->type == TG_OTHER)
		return sync_read_piece(p, (struct preq *)op, off, len, buf);
	return apply_storage(&p->p_st, op, off, len, buf);
}

static int
io_flush(void *ctx)
{
	struct primary *p = ctx;
	int rc;

	if (__atomic_load_n(&p->p_disk_failed, __ATOMIC_RELAXED))
		return 0;
	rc = storage_flush(&p->p_st);

	if (rc != 0)
		log_warnx("storage: flush: %s", strerror(-rc));
	return rc;
}

/* Engine thread: hand the finished request to the event thread. */
static void
io_local_done(struct tg_op *op, int status)
{
	struct preq *r = (struct preq *)op;

	r->pr_local_status = status;
	cq_push(&r->pr_p->p_cq, &r->pr_cq);
}

static void
io_drain(evutil_socket_t fd, short what, void *arg)
{
	struct primary *p = arg;
	struct cq_node *n, *next;
	uint64_t now = now_ns();

	(void)fd; (void)what;
	for (n = cq_take(&p->p_cq); n != NULL; n = next) {
		struct preq *r = CONTAINER_OF(n, struct preq, pr_cq);

		next = n->cq_next;
		r->pr_state |= PR_LOCAL_DONE;
		r->pr_local_ns = now;
		/* The mirror may now have writes this disk lost. */
		if (r->pr_op.type == TG_FLUSH && r->pr_local_status != 0)
			cr_check_flushes(&p->p_cr);
		io_cr_release(p, r, 0);
		/* A sync read's frame becomes ready to go now. */
		if (r->pr_op.type == TG_OTHER)
			repl_ready(p);
		io_maybe_finish(p, r);
	}
	if (p->p_stopping)
		primary_check_stopped(p);
}

void
io_submit(struct primary *p, struct preq *r)
{
	struct tg_op *op = &r->pr_op;
	int rc, replicate;

	r->pr_p = p;
	op->seq = ++p->p_seq;
	op->done = io_local_done;
	op->arg = r;
	op->flags = 0;
	if (r->pr_flags & NBD_CMD_FLAG_FUA)
		op->flags |= TG_F_FUA;
	if (r->pr_flags & NBD_CMD_FLAG_NO_HOLE)
		op->flags |= TG_F_NO_HOLE;
	/* sync.c's internal reads arrive with TG_OTHER set (their pr_cmd is
	 * meaningless: 0 would read as NBD_CMD_READ). */
	if (op->type == TG_OTHER) {
		VERIFY(r->pr_done != NULL);
		op->buf = r->pr_data;
	} else switch (r->pr_cmd) {
	case NBD_CMD_READ:
		op->type = TG_READ;
		op->buf = r->pr_data;
		p->p_reads++;
		p->p_bytes_read += op->len;
		break;
	case NBD_CMD_WRITE:
		op->type = TG_WRITE;
		op->buf = r->pr_data;
		p->p_writes++;
		p->p_bytes_written += op->len;
		break;
	case NBD_CMD_WRITE_ZEROES:
		op->type = TG_WRITE_ZEROES;
		p->p_zeroes++;
		break;
	case NBD_CMD_TRIM:
		op->type = TG_TRIM;
		p->p_trims++;
		break;
	case NBD_CMD_FLUSH:
		op->type = TG_FLUSH;
		op->off = op->len = 0;
		p->p_flushes++;
		break;
	default:
		VERIFY(0);	/* nbd.c passes only the commands above */
	}

	/* Answered requests only: the frontier counts r's predecessors. */
	r->pr_inc_prev = p->p_inc_tail;
	r->pr_inc_next = NULL;
	if (p->p_inc_tail != NULL)
		p->p_inc_tail->pr_inc_next = r;
	else
		p->p_inc_head = r;
	p->p_inc_tail = r;
	op->frontier = 0;	/* locally nothing waits: see r->pr_frontier */
	r->pr_frontier = io_frontier(p);

	/* A mirror read for a failed disk goes to the mirror only. */
	if (op->type == TG_OTHER && r->pr_kind == SY_RREAD) {
		r->pr_state |= PR_LOCAL_DONE | PR_REPLICATE;
		repl_send(p, r);
		return;
	}
	/* With the disk failed, a write exists only if the mirror gets it. */
	if (p->p_disk_failed && op->type != TG_READ && op->type != TG_OTHER &&
	    !repl_connected(p)) {
		r->pr_local_status = -EIO;
		r->pr_state |= PR_LOCAL_DONE | PR_REMOTE_DONE;
		io_maybe_finish(p, r);
		return;
	}
	if ((op->type == TG_WRITE || op->type == TG_WRITE_ZEROES ||
	    op->type == TG_TRIM) && io_cr_begin(p, r) != 0) {
		r->pr_local_status = -EIO;	/* cr.c logged why */
		r->pr_state |= PR_LOCAL_DONE | PR_REMOTE_DONE;
		io_maybe_finish(p, r);
		return;
	}
	/* Into the engine first: a frame must never leave for a request the
	 * local side refused. Nothing completes before this turn ends. */
	replicate = op->type != TG_READ && repl_connected(p);
	if ((rc = replicate ? tg_submit_claim(p->p_tg, op) :
	    tg_submit(p->p_tg, op)) < 0) {
		log_warnx("cannot queue a request: %s", strerror(-rc));
		r->pr_local_status = rc;
		r->pr_state |= PR_LOCAL_DONE | PR_REMOTE_DONE;
		io_cr_release(p, r, 0);
		if (repl_connected(p))
			io_cr_release(p, r, 0);	/* nothing was written */
		io_maybe_finish(p, r);
		return;
	}
	if (replicate) {
		r->pr_state |= PR_REPLICATE;
		repl_send(p, r);	/* sets PR_REMOTE_DONE as the mode says */
		/* A claimed write is applied after the frame's send, which
		 * repl_send queued as an event of this turn: its local
		 * write then overlaps the trip to the mirror. */
		if (rc == 1)
			event_active(p->p_claimed_ev, EV_TIMEOUT, 0);
	} else {
		/* Reads stay local; writes were recorded (io_cr_begin) and
		 * reach the mirror by the next resync. */
		r->pr_state |= PR_REMOTE_DONE;
	}
}

static void
io_run_claimed(evutil_socket_t fd, short what, void *arg)
{
	struct primary *p = arg;

	(void)fd; (void)what;
	tg_run_claimed(p->p_tg);
}

int
io_init(struct primary *p)
{
	struct tg_params tp = {
		.groups = p->p_cfg.task_groups,
		.tasks = p->p_cfg.tasks_per_group,
		.range_size = p->p_cfg.range_size,
		.inline_ns = p->p_cfg.inline_us * 1000u,
		/* Never inline_flush: the FLUSH frame to the mirror leaves at
		 * the end of the loop pass, after tg_submit returns. */
	};
	struct tg_backend be = { io_apply, io_flush, p };
	int rc;

	pool_init(&p->p_pool, sizeof(struct preq) + IO_POOL_PAYLOAD,
	    p->p_cfg.max_inflight);
	if ((rc = cq_init(&p->p_cq, p->p_base, io_drain, p)) != 0)
		return rc;
	if ((p->p_claimed_ev = event_new(p->p_base, -1, 0, io_run_claimed,
	    p)) == NULL)
		return -ENOMEM;
	return tg_create(&p->p_tg, &tp, &be);
}

void
io_fini(struct primary *p)
{
	tg_destroy(p->p_tg);
	p->p_tg = NULL;
	if (p->p_claimed_ev != NULL)
		event_free(p->p_claimed_ev);
	p->p_claimed_ev = NULL;
	cq_fini(&p->p_cq);
	pool_fini(&p->p_pool);
}
