/*
 * tg.c: range task groups; the contract is in tg.h.
 *
 * Locks, in the only order they may nest:
 *
 *   tg_lock  (engine)  incomplete list, frontier gate, ready flush, counters
 *   ct_lock  (group)   conflict table and every mini queue of the group
 *   mq_lock  (group)   main queue and the group's idle-task list
 *   w_lock   (waker)   taken last, inside waker_signal / waker_wait
 *
 * Why a piece moves from the main queue into the conflict table under
 * ct_lock: the main queue is in sequence order, and a piece may run only
 * when no older overlapping entry is in the table. If popping and
 * inserting were not one step, a task could pop piece 7 and check the
 * table before another task that popped the older, overlapping piece 5 had
 * inserted it, and 7 would overtake 5.
 *
 * Why that check is enough: every older piece in the same range went
 * through this group's main queue before the piece at hand (the dispatcher
 * pushes in sequence order, under tg_lock), so it is either complete or in
 * the table. Overlapping pieces always share a range, hence a group.
 *
 * A conflicting piece is queued behind the task that holds the newest older
 * overlapping entry, and its entry moves with it. That task finishes its
 * own entry first, then pops the piece and checks again; the oldest entry
 * of any overlap chain never waits, so the chain always progresses.
 *
 * Wake-ups (wake.h, DESIGN.md "Adaptive wake-ups"). For the main queue the
 * group's idle list is the enabled signal: the dispatcher wakes a task only
 * if it pops one from that list. A task joins the list, under mq_lock in
 * the same step as the look that found the main queue empty, only while
 * its waker is armed; under WAKE_ADAPTIVE that is after it drained, looked
 * once more (the poll: a lock-free peek at the queue heads) and re-armed,
 * so a task that is still looking takes new pieces without any wake-up. A
 * task on the idle list is armed, or awake with its signal taken by a
 * producer (w_pending set: its next sleep returns at once, and it leaves
 * the list), or just back from waker_wait and about to leave the list; in
 * every case it looks at the main queue, under mq_lock, after any
 * dispatcher that popped it pushed its piece, or that dispatcher's signal
 * finds it armed. The mini queues signal the holder's waker directly
 * (disarmed while it works).
 *
 * Signals found under tg_lock or ct_lock are collected in a wake_list and
 * sent after the lock is released, so a woken thread does not at once block
 * on the lock its waker still holds.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/tg.h"
#include "common/util.h"
#include "common/wake.h"

struct tg_task {
	struct tg_group	*t_group;
	unsigned	 t_index;
	pthread_t	 t_thread;
	struct waker	 t_waker;
	struct tg_piece	*t_mini_head;	/* ct_lock; stored atomically (peek) */
	struct tg_piece	*t_mini_tail;
	int		 t_idle;	/* on the group's idle list (mq_lock) */
};

struct tg_group {
	struct tg	*g_tg;
	pthread_mutex_t	 g_ct_lock;
	struct tg_piece	*g_ct_head;	/* conflict table entries */
	unsigned	 g_ct_count;
	uint64_t	 g_mini_moves;

	pthread_mutex_t	 g_mq_lock;
	struct tg_piece	*g_mq_head;	/* main queue, sequence order; stored
					 * atomically (task_peek) */
	struct tg_piece	*g_mq_tail;
	unsigned	 g_mq_count;
	unsigned	*g_idle;	/* stack of idle task indexes */
	unsigned	 g_nidle;
	int		 g_stopping;

	struct tg_task	*g_tasks;
	unsigned	 g_ntasks;
};

struct tg {
	struct tg_params   tg_params;
	struct tg_backend  tg_be;
	struct tg_group	  *tg_groups;

	pthread_mutex_t	   tg_lock;
	pthread_cond_t	   tg_drained;	/* tg_undone reached 0 */
	unsigned	   tg_undone;	/* submitted, done() not returned (atomic) */
	struct tg_op	  *tg_inc_head;	/* incomplete ops, sequence order */
	struct tg_op	  *tg_inc_tail;
	unsigned	   tg_inflight;
	struct tg_op	  *tg_gate_head;	/* held by the frontier gate */
	struct tg_op	  *tg_gate_tail;
	unsigned	   tg_gated;
	uint64_t	   tg_last_seq;
	uint64_t	   tg_last_frontier;
	uint64_t	   tg_submitted;
	uint64_t	   tg_completed;

	/* The flusher: runs a FLUSH once everything before it completed. */
	pthread_t	   tg_flusher;
	struct waker	   tg_flush_waker;
	struct tg_op	  *tg_flush_ready;	/* tg_lock */
	int		   tg_stopping;

	/* Inline execution (tg.h): the mean apply time decides. */
	uint64_t	   tg_apply_ns;	/* moving average (atomic, relaxed) */
	uint64_t	   tg_inlined;	/* dispatcher only; read for stats */
	struct tg_op	  *tg_claimed;	/* dispatcher only: tg_submit_claim's
					 * op, not yet applied */
};

static void op_complete(struct tg *, struct tg_op *);
static void flush_run(struct tg *, struct tg_op *);

/* p_task of a piece the dispatcher applies itself: no task holds it, and
 * none can need to (it is the newest entry until it is applied: a claimed
 * op is applied before the dispatcher's next call into the engine). */
#define TASK_INLINE	UINT32_MAX

/*
 * Wakers to signal once the caller has dropped its locks. Every waker here
 * lives as long as the engine, and the engine is not destroyed while a
 * call that collected one runs (tg_destroy drains first, and tg_undone
 * drops only after op_complete sent its signals), so a late signal is
 * safe. A full list signals at once, under the lock: correct, only slower.
 */
#define WAKE_LIST_MAX 16

struct wake_list {
	unsigned	 wl_n;
	struct waker	*wl_w[WAKE_LIST_MAX];
};

static void
wake_add(struct wake_list *wl, struct waker *w)
{
	unsigned i;

	for (i = 0; i < wl->wl_n; i++)
		if (wl->wl_w[i] == w)
			return;
	if (wl->wl_n == WAKE_LIST_MAX)
		waker_signal(w);
	else
		wl->wl_w[wl->wl_n++] = w;
}

/* Sends the collected signals. No engine lock held. */
static void
wake_run(struct wake_list *wl)
{
	unsigned i;

	for (i = 0; i < wl->wl_n; i++)
		waker_signal(wl->wl_w[i]);
	wl->wl_n = 0;
}

/* Applies piece p and folds its duration into the moving average. */
static int
piece_apply(struct tg *tg, struct tg_piece *p)
{
	struct tg_op *op = p->p_op;
	uint64_t t0 = now_ns(), dt, avg;
	int status;

	status = tg->tg_be.apply(tg->tg_be.ctx, op, p->p_off, p->p_len,
	    op->buf == NULL ? NULL : (char *)op->buf + (p->p_off - op->off));
	/* A lost update between two threads only blurs an average. */
	dt = now_ns() - t0;
	avg = __atomic_load_n(&tg->tg_apply_ns, __ATOMIC_RELAXED);
	avg = avg - avg / 8 + dt / 8;
	__atomic_store_n(&tg->tg_apply_ns, avg, __ATOMIC_RELAXED);
	return status;
}

static int
spans_overlap(const struct tg_piece *a, const struct tg_piece *b)
{
	return a->p_off < b->p_off + b->p_len && b->p_off < a->p_off + a->p_len;
}

/* The highest S with every op <= S complete. tg_lock held. */
static uint64_t
watermark_locked(const struct tg *tg)
{
	return tg->tg_inc_head != NULL ? tg->tg_inc_head->seq - 1 :
	    tg->tg_last_seq;
}

/*
 * Cuts op into pieces at range boundaries. Returns 0 or -ENOMEM.
 */
static int
op_split(struct tg *tg, struct tg_op *op)
{
	uint64_t rs = tg->tg_params.range_size;
	uint64_t first = op->off / rs, last = (op->off + op->len - 1) / rs;
	uint64_t n = last - first + 1, off = op->off;
	unsigned i;

	if (n <= TG_INLINE_PIECES) {
		op->o_pieces = op->o_inline;
	} else {
		op->o_pieces = calloc(n, sizeof(*op->o_pieces));
		if (op->o_pieces == NULL)
			return -ENOMEM;
	}
	op->o_npieces = (unsigned)n;
	for (i = 0; i < n; i++) {
		struct tg_piece *p = &op->o_pieces[i];
		uint64_t end = MIN((first + i + 1) * rs, op->off + op->len);

		memset(p, 0, sizeof(*p));
		p->p_op = op;
		p->p_off = off;
		p->p_len = end - off;
		off = end;
	}
	return 0;
}

size_t
tg_op_extra(const struct tg *tg, uint64_t off, uint64_t len)
{
	uint64_t rs = tg->tg_params.range_size, n;

	if (len == 0)
		return 0;
	n = (off + len - 1) / rs - off / rs + 1;
	return n > TG_INLINE_PIECES ? (size_t)n * sizeof(struct tg_piece) : 0;
}

/*
 * Pushes op's pieces onto their groups' main queues and adds an idle task
 * of each to wl. tg_lock held: that is what keeps every main queue in
 * sequence order when the gate and the dispatcher both release ops.
 */
static void
dispatch_locked(struct tg *tg, struct tg_op *op, struct wake_list *wl)
{
	unsigned i;

	__atomic_store_n(&op->o_pending, (int)op->o_npieces, __ATOMIC_RELAXED);
	for (i = 0; i < op->o_npieces; i++) {
		struct tg_piece *p = &op->o_pieces[i];
		uint64_t range = p->p_off / tg->tg_params.range_size;
		struct tg_group *g =
		    &tg->tg_groups[range % tg->tg_params.groups];
		struct tg_task *wake = NULL;

		pthread_mutex_lock(&g->g_mq_lock);
		if (g->g_mq_tail != NULL)
			g->g_mq_tail->p_next = p;
		else
			__atomic_store_n(&g->g_mq_head, p, __ATOMIC_RELAXED);
		g->g_mq_tail = p;
		g->g_mq_count++;
		if (g->g_nidle > 0) {
			wake = &g->g_tasks[g->g_idle[--g->g_nidle]];
			wake->t_idle = 0;
		}
		pthread_mutex_unlock(&g->g_mq_lock);
		if (wake != NULL)
			wake_add(wl, &wake->t_waker);
	}
}

/* Releases gated ops whose frontier is now complete. tg_lock held. */
static void
gate_release_locked(struct tg *tg, struct wake_list *wl)
{
	uint64_t wm = watermark_locked(tg);
	struct tg_op *op;

	while ((op = tg->tg_gate_head) != NULL && op->frontier <= wm) {
		tg->tg_gate_head = op->o_gate_next;
		if (tg->tg_gate_head == NULL)
			tg->tg_gate_tail = NULL;
		op->o_gate_next = NULL;
		tg->tg_gated--;
		dispatch_locked(tg, op, wl);
	}
}

/* Hands the head FLUSH to the flusher once all before it completed. */
static void
flush_check_locked(struct tg *tg, struct wake_list *wl)
{
	struct tg_op *head = tg->tg_inc_head;

	if (head != NULL && head->type == TG_FLUSH && !head->o_flush_started) {
		head->o_flush_started = 1;
		VERIFY(tg->tg_flush_ready == NULL);
		tg->tg_flush_ready = head;
		wake_add(wl, &tg->tg_flush_waker);
	}
}

static struct tg_piece *ct_newest_older_locked(struct tg_group *,
    const struct tg_piece *);
static void ct_insert_locked(struct tg_group *, struct tg_piece *);
static void ct_remove_locked(struct tg_group *, struct tg_piece *);
static void piece_done(struct tg *, struct tg_piece *, int);

/*
 * Whether the dispatcher may apply op itself (tg.h, "Inline execution"),
 * and if so its piece's entry is in the conflict table. The op is the
 * newest there is, so nothing can queue behind its entry while it runs.
 * tg_lock held (so ct_lock and mq_lock nest inside it).
 */
static int
inline_claim_locked(struct tg *tg, struct tg_op *op)
{
	struct tg_piece *p = &op->o_pieces[0];
	struct tg_group *g;
	int ok;

	if (tg->tg_params.inline_ns == 0 || op->o_npieces != 1 ||
	    (op->flags & TG_F_FUA) || op->type == TG_OTHER ||
	    __atomic_load_n(&tg->tg_apply_ns, __ATOMIC_RELAXED) >=
	    tg->tg_params.inline_ns)
		return 0;
	g = &tg->tg_groups[(p->p_off / tg->tg_params.range_size) %
	    tg->tg_params.groups];
	pthread_mutex_lock(&g->g_ct_lock);
	pthread_mutex_lock(&g->g_mq_lock);
	/* Pieces in the main queue are older and not yet in the table. */
	ok = g->g_mq_head == NULL;
	pthread_mutex_unlock(&g->g_mq_lock);
	if (ok && ct_newest_older_locked(g, p) == NULL) {
		p->p_task = TASK_INLINE;
		ct_insert_locked(g, p);
	} else
		ok = 0;
	pthread_mutex_unlock(&g->g_ct_lock);
	if (ok)
		__atomic_store_n(&op->o_pending, 1, __ATOMIC_RELAXED);
	return ok;
}

/* Applies a claimed op on the dispatcher's thread; no lock held. */
static void
inline_run(struct tg *tg, struct tg_op *op)
{
	struct tg_piece *p = &op->o_pieces[0];
	struct tg_group *g = &tg->tg_groups[(p->p_off /
	    tg->tg_params.range_size) % tg->tg_params.groups];
	int status;

	__atomic_store_n(&tg->tg_inlined, tg->tg_inlined + 1, __ATOMIC_RELAXED);
	status = piece_apply(tg, p);
	pthread_mutex_lock(&g->g_ct_lock);
	ct_remove_locked(g, p);
	pthread_mutex_unlock(&g->g_ct_lock);
	piece_done(tg, p, status);
}

void
tg_run_claimed(struct tg *tg)
{
	struct tg_op *op;

	if ((op = tg->tg_claimed) != NULL) {
		tg->tg_claimed = NULL;
		inline_run(tg, op);
	}
}

/* What submit does with an op it may apply inline. */
enum submit_mode {
	SUB_RUN,	/* tg_submit: apply it now, else queue it */
	SUB_CLAIM,	/* tg_submit_claim: hold it for tg_run_claimed */
	SUB_ONLY,	/* tg_try_inline: apply it now, else -EAGAIN */
};

static int
submit(struct tg *tg, struct tg_op *op, enum submit_mode mode)
{
	struct wake_list wl = { 0 };
	int rc, inl = 0;

	tg_run_claimed(tg);
	if (op->frontier >= op->seq || (op->type != TG_FLUSH && op->len == 0) ||
	    op->off + op->len < op->off)
		return -EINVAL;
	op->o_prev = op->o_next = op->o_gate_next = NULL;
	op->o_status = 0;
	op->o_flush_started = 0;
	op->o_npieces = 0;
	op->o_pieces = NULL;
	if (op->type != TG_FLUSH && (rc = op_split(tg, op)) != 0)
		return rc;

	pthread_mutex_lock(&tg->tg_lock);
	if (op->seq <= tg->tg_last_seq || op->frontier < tg->tg_last_frontier)
		rc = -EINVAL;
	else if (mode == SUB_ONLY && (op->type == TG_FLUSH ||
	    tg->tg_gate_head != NULL || op->frontier > (tg->tg_inc_head !=
	    NULL ? tg->tg_inc_head->seq - 1 : op->seq - 1) ||
	    !inline_claim_locked(tg, op)))
		/* The watermark as it will be with op in the list. */
		rc = -EAGAIN;
	else
		rc = 0;
	if (rc != 0) {
		pthread_mutex_unlock(&tg->tg_lock);
		if (op->o_pieces != op->o_inline)
			FREE_AND_NULL(&op->o_pieces);
		return rc;
	}
	tg->tg_last_seq = op->seq;
	tg->tg_last_frontier = op->frontier;
	tg->tg_submitted++;
	tg->tg_inflight++;
	__atomic_add_fetch(&tg->tg_undone, 1, __ATOMIC_ACQ_REL);
	op->o_prev = tg->tg_inc_tail;
	if (tg->tg_inc_tail != NULL)
		tg->tg_inc_tail->o_next = op;
	else
		tg->tg_inc_head = op;
	tg->tg_inc_tail = op;

	if (op->type == TG_FLUSH && tg->tg_params.inline_flush &&
	    tg->tg_inc_head == op) {
		/* Nothing before it is incomplete: flush here and now. */
		op->o_flush_started = 1;
		inl = 1;
	} else if (op->type == TG_FLUSH) {
		/* Not gated: it waits for everything before it anyway. */
		flush_check_locked(tg, &wl);
	} else if (tg->tg_gate_head != NULL || op->frontier > watermark_locked(tg)) {
		/* Frontiers never decrease: once one op waits, all after it do. */
		if (tg->tg_gate_tail != NULL)
			tg->tg_gate_tail->o_gate_next = op;
		else
			tg->tg_gate_head = op;
		tg->tg_gate_tail = op;
		tg->tg_gated++;
	} else if (mode == SUB_ONLY) {
		inl = 1;	/* claimed above */
	} else if (!(inl = inline_claim_locked(tg, op))) {
		dispatch_locked(tg, op, &wl);
	}
	pthread_mutex_unlock(&tg->tg_lock);
	wake_run(&wl);
	if (inl && op->type == TG_FLUSH) {
		__atomic_store_n(&tg->tg_inlined, tg->tg_inlined + 1,
		    __ATOMIC_RELAXED);
		flush_run(tg, op);
	} else if (inl && mode == SUB_CLAIM) {
		tg->tg_claimed = op;
		return 1;
	} else if (inl) {
		inline_run(tg, op);
		return mode == SUB_ONLY;
	}
	return 0;
}

int
tg_submit(struct tg *tg, struct tg_op *op)
{
	return submit(tg, op, SUB_RUN);
}

int
tg_submit_claim(struct tg *tg, struct tg_op *op)
{
	return submit(tg, op, SUB_CLAIM);
}

int
tg_try_inline(struct tg *tg, struct tg_op *op)
{
	return submit(tg, op, SUB_ONLY);
}

/*
 * Marks op complete: out of the incomplete list, releasing what waited for
 * the watermark, then tells the caller. Any engine thread.
 */
static void
op_complete(struct tg *tg, struct tg_op *op)
{
	struct wake_list wl = { 0 };
	int status = __atomic_load_n(&op->o_status, __ATOMIC_ACQUIRE);
	int was_head;

	if (op->o_pieces != op->o_inline)
		FREE_AND_NULL(&op->o_pieces);

	pthread_mutex_lock(&tg->tg_lock);
	/* Read under the lock: a neighbour's completion rewrites o_prev. */
	was_head = op->o_prev == NULL;
	if (op->o_prev != NULL)
		op->o_prev->o_next = op->o_next;
	else
		tg->tg_inc_head = op->o_next;
	if (op->o_next != NULL)
		op->o_next->o_prev = op->o_prev;
	else
		tg->tg_inc_tail = op->o_prev;
	tg->tg_inflight--;
	tg->tg_completed++;
	if (was_head) {
		/* Only a change at the head moves the watermark. */
		gate_release_locked(tg, &wl);
		flush_check_locked(tg, &wl);
	}
	pthread_mutex_unlock(&tg->tg_lock);
	wake_run(&wl);

	op->done(op, status);
	if (__atomic_sub_fetch(&tg->tg_undone, 1, __ATOMIC_ACQ_REL) == 0) {
		pthread_mutex_lock(&tg->tg_lock);
		pthread_cond_broadcast(&tg->tg_drained);
		pthread_mutex_unlock(&tg->tg_lock);
	}
}

static void
piece_done(struct tg *tg, struct tg_piece *p, int status)
{
	struct tg_op *op = p->p_op;

	if (status != 0) {
		int expected = 0;
		__atomic_compare_exchange_n(&op->o_status, &expected, status,
		    0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
	}
	if (__atomic_sub_fetch(&op->o_pending, 1, __ATOMIC_ACQ_REL) == 0)
		op_complete(tg, op);
}

static void
mini_push_locked(struct tg_task *t, struct tg_piece *p)
{
	p->p_next = NULL;
	if (t->t_mini_tail != NULL)
		t->t_mini_tail->p_next = p;
	else
		__atomic_store_n(&t->t_mini_head, p, __ATOMIC_RELAXED);
	t->t_mini_tail = p;
}

static struct tg_piece *
mini_pop_locked(struct tg_task *t)
{
	struct tg_piece *p = t->t_mini_head;

	if (p != NULL) {
		__atomic_store_n(&t->t_mini_head, p->p_next, __ATOMIC_RELAXED);
		if (t->t_mini_head == NULL)
			t->t_mini_tail = NULL;
		p->p_next = NULL;
	}
	return p;
}

static void
ct_insert_locked(struct tg_group *g, struct tg_piece *p)
{
	p->p_ct_prev = NULL;
	p->p_ct_next = g->g_ct_head;
	if (g->g_ct_head != NULL)
		g->g_ct_head->p_ct_prev = p;
	g->g_ct_head = p;
	g->g_ct_count++;
}

static void
ct_remove_locked(struct tg_group *g, struct tg_piece *p)
{
	if (p->p_ct_prev != NULL)
		p->p_ct_prev->p_ct_next = p->p_ct_next;
	else
		g->g_ct_head = p->p_ct_next;
	if (p->p_ct_next != NULL)
		p->p_ct_next->p_ct_prev = p->p_ct_prev;
	p->p_ct_prev = p->p_ct_next = NULL;
	g->g_ct_count--;
}

/* The newest entry older than p that overlaps it, or NULL. ct_lock held. */
static struct tg_piece *
ct_newest_older_locked(struct tg_group *g, const struct tg_piece *p)
{
	uint64_t seq = p->p_op->seq;
	struct tg_piece *e, *best = NULL;

	for (e = g->g_ct_head; e != NULL; e = e->p_ct_next) {
		if (e->p_op->seq < seq && spans_overlap(e, p) &&
		    (best == NULL || e->p_op->seq > best->p_op->seq))
			best = e;
	}
	return best;
}

/*
 * The next piece task t may execute, or NULL when it has nothing: then
 * *stopping says whether the group is stopping, and if it is not and t's
 * waker is armed, t is on the group's idle list. Mini queue first, then the
 * main queue; a piece that conflicts is passed to the mini queue of the
 * task holding its newest older overlap, and that task's waker goes on wl.
 */
static struct tg_piece *
task_next(struct tg_task *t, struct wake_list *wl, int *stopping)
{
	struct tg_group *g = t->t_group;
	struct tg_piece *p, *older;
	struct tg_task *holder;

	*stopping = 0;
	pthread_mutex_lock(&g->g_ct_lock);
	for (;;) {
		if ((p = mini_pop_locked(t)) == NULL) {
			pthread_mutex_lock(&g->g_mq_lock);
			if ((p = g->g_mq_head) != NULL) {
				__atomic_store_n(&g->g_mq_head, p->p_next,
				    __ATOMIC_RELAXED);
				if (g->g_mq_head == NULL)
					g->g_mq_tail = NULL;
				g->g_mq_count--;
				p->p_next = NULL;
			} else if (g->g_stopping) {
				*stopping = 1;
			} else if (!t->t_idle && waker_armed(&t->t_waker)) {
				/* Enable the dispatcher's signal. */
				t->t_idle = 1;
				g->g_idle[g->g_nidle++] = t->t_index;
			}
			pthread_mutex_unlock(&g->g_mq_lock);
			if (p == NULL)
				break;
			ct_insert_locked(g, p);
		}
		p->p_task = t->t_index;
		if ((older = ct_newest_older_locked(g, p)) == NULL)
			break;
		VERIFY(older->p_task != TASK_INLINE);
		holder = &g->g_tasks[older->p_task];
		p->p_task = older->p_task;
		mini_push_locked(holder, p);
		g->g_mini_moves++;
		if (holder != t)
			wake_add(wl, &holder->t_waker);
	}
	pthread_mutex_unlock(&g->g_ct_lock);
	return p;
}

/*
 * The poll's look: whether t may have work, without a lock. Only a hint
 * (task_next decides), and never the look after re-arming (wake.h).
 */
static int
task_peek(struct tg_task *t)
{
	return __atomic_load_n(&t->t_mini_head, __ATOMIC_RELAXED) != NULL ||
	    __atomic_load_n(&t->t_group->g_mq_head, __ATOMIC_RELAXED) != NULL;
}

/* Takes t off its group's idle list if it is on it. */
static void
task_leave_idle(struct tg_task *t)
{
	struct tg_group *g = t->t_group;
	unsigned i;

	pthread_mutex_lock(&g->g_mq_lock);
	if (t->t_idle) {
		for (i = 0; g->g_idle[i] != t->t_index; i++)
			;
		g->g_idle[i] = g->g_idle[--g->g_nidle];
		t->t_idle = 0;
	}
	pthread_mutex_unlock(&g->g_mq_lock);
}

static void *
task_main(void *arg)
{
	struct tg_task *t = arg;
	struct tg_group *g = t->t_group;
	struct tg *tg = g->g_tg;
	struct wake_list wl = { 0 };
	struct tg_piece *p;
	enum wake_step step;
	int status, stopping;

	for (;;) {
		p = task_next(t, &wl, &stopping);
		wake_run(&wl);
		if (p == NULL) {
			if (stopping)
				break;
			/*
			 * Poll (with a lock-free look), re-arm or sleep.
			 * Woken, leave the idle list: a task woken for its
			 * mini queue must not be the one the dispatcher picks
			 * to wake. (A task whose armed signal a producer took
			 * before it slept may stay on the list a while: it is
			 * awake and looks at the main queue before it sleeps
			 * again, so it costs no piece anything but a delay.)
			 */
			step = waker_wait(&t->t_waker);
			if (step == WAKE_POLL && !task_peek(t))
				step = waker_wait(&t->t_waker);
			if (step == WAKE_SLEEP)
				task_leave_idle(t);
			continue;
		}
		waker_busy(&t->t_waker);
		status = piece_apply(tg, p);
		pthread_mutex_lock(&g->g_ct_lock);
		ct_remove_locked(g, p);
		pthread_mutex_unlock(&g->g_ct_lock);
		piece_done(tg, p, status);
	}
	return NULL;
}

/* Runs a FLUSH whose predecessors are all complete; no lock held. */
static void
flush_run(struct tg *tg, struct tg_op *op)
{
	int status = tg->tg_be.flush(tg->tg_be.ctx);

	if (status != 0)
		__atomic_store_n(&op->o_status, status, __ATOMIC_RELEASE);
	op_complete(tg, op);
}

static void *
flusher_main(void *arg)
{
	struct tg *tg = arg;
	struct tg_op *op;

	for (;;) {
		pthread_mutex_lock(&tg->tg_lock);
		op = tg->tg_flush_ready;
		tg->tg_flush_ready = NULL;
		if (op == NULL && tg->tg_stopping) {
			pthread_mutex_unlock(&tg->tg_lock);
			break;
		}
		pthread_mutex_unlock(&tg->tg_lock);
		if (op == NULL) {
			waker_wait(&tg->tg_flush_waker);
			continue;
		}
		waker_busy(&tg->tg_flush_waker);
		flush_run(tg, op);
	}
	return NULL;
}

int
tg_create(struct tg **out, const struct tg_params *p,
    const struct tg_backend *be)
{
	struct tg *tg;
	unsigned gi, ti;

	if (p->groups == 0 || p->tasks == 0 || p->range_size == 0 ||
	    (p->range_size & (p->range_size - 1)) != 0 || be->apply == NULL ||
	    be->flush == NULL ||
	    (p->wake != WAKE_ADAPTIVE && p->wake != WAKE_ALWAYS))
		return -EINVAL;
	if ((tg = calloc(1, sizeof(*tg))) == NULL)
		return -ENOMEM;
	tg->tg_params = *p;
	tg->tg_be = *be;
	pthread_mutex_init(&tg->tg_lock, NULL);
	pthread_cond_init(&tg->tg_drained, NULL);
	waker_init(&tg->tg_flush_waker, p->wake);
	tg->tg_groups = calloc(p->groups, sizeof(*tg->tg_groups));
	if (tg->tg_groups == NULL)
		goto fail;
	for (gi = 0; gi < p->groups; gi++) {
		struct tg_group *g = &tg->tg_groups[gi];

		g->g_tg = tg;
		pthread_mutex_init(&g->g_ct_lock, NULL);
		pthread_mutex_init(&g->g_mq_lock, NULL);
		g->g_ntasks = p->tasks;
		g->g_tasks = calloc(p->tasks, sizeof(*g->g_tasks));
		g->g_idle = calloc(p->tasks, sizeof(*g->g_idle));
		if (g->g_tasks == NULL || g->g_idle == NULL)
			goto fail;
		for (ti = 0; ti < p->tasks; ti++) {
			g->g_tasks[ti].t_group = g;
			g->g_tasks[ti].t_index = ti;
			waker_init(&g->g_tasks[ti].t_waker, p->wake);
		}
	}
	/* Threads last, so the fail path never has to stop any. */
	for (gi = 0; gi < p->groups; gi++) {
		struct tg_group *g = &tg->tg_groups[gi];
		for (ti = 0; ti < p->tasks; ti++)
			VERIFY(pthread_create(&g->g_tasks[ti].t_thread, NULL,
			    task_main, &g->g_tasks[ti]) == 0);
	}
	VERIFY(pthread_create(&tg->tg_flusher, NULL, flusher_main, tg) == 0);
	*out = tg;
	return 0;
fail:
	for (gi = 0; tg->tg_groups != NULL && gi < p->groups; gi++) {
		free(tg->tg_groups[gi].g_tasks);
		free(tg->tg_groups[gi].g_idle);
	}
	free(tg->tg_groups);
	free(tg);
	return -ENOMEM;
}

void
tg_drain(struct tg *tg)
{
	tg_run_claimed(tg);
	pthread_mutex_lock(&tg->tg_lock);
	while (__atomic_load_n(&tg->tg_undone, __ATOMIC_ACQUIRE) > 0)
		pthread_cond_wait(&tg->tg_drained, &tg->tg_lock);
	pthread_mutex_unlock(&tg->tg_lock);
}

void
tg_destroy(struct tg *tg)
{
	unsigned gi, ti;

	if (tg == NULL)
		return;
	tg_drain(tg);
	for (gi = 0; gi < tg->tg_params.groups; gi++) {
		struct tg_group *g = &tg->tg_groups[gi];

		pthread_mutex_lock(&g->g_mq_lock);
		g->g_stopping = 1;
		pthread_mutex_unlock(&g->g_mq_lock);
		for (ti = 0; ti < g->g_ntasks; ti++)
			waker_signal(&g->g_tasks[ti].t_waker);
		for (ti = 0; ti < g->g_ntasks; ti++) {
			pthread_join(g->g_tasks[ti].t_thread, NULL);
			waker_destroy(&g->g_tasks[ti].t_waker);
		}
		pthread_mutex_destroy(&g->g_ct_lock);
		pthread_mutex_destroy(&g->g_mq_lock);
		free(g->g_tasks);
		free(g->g_idle);
	}
	pthread_mutex_lock(&tg->tg_lock);
	tg->tg_stopping = 1;
	pthread_mutex_unlock(&tg->tg_lock);
	waker_signal(&tg->tg_flush_waker);
	pthread_join(tg->tg_flusher, NULL);
	waker_destroy(&tg->tg_flush_waker);
	pthread_cond_destroy(&tg->tg_drained);
	pthread_mutex_destroy(&tg->tg_lock);
	free(tg->tg_groups);
	free(tg);
}

void
tg_get_stats(struct tg *tg, struct tg_stats *st)
{
	unsigned gi, ti;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&tg->tg_lock);
	st->submitted = tg->tg_submitted;
	st->completed = tg->tg_completed;
	st->watermark = watermark_locked(tg);
	st->gated = tg->tg_gated;
	st->inflight = tg->tg_inflight;
	pthread_mutex_unlock(&tg->tg_lock);
	st->inlined = __atomic_load_n(&tg->tg_inlined, __ATOMIC_RELAXED);
	st->apply_ns = __atomic_load_n(&tg->tg_apply_ns, __ATOMIC_RELAXED);
	st->groups = tg->tg_params.groups;
	for (gi = 0; gi < tg->tg_params.groups; gi++) {
		struct tg_group *g = &tg->tg_groups[gi];

		pthread_mutex_lock(&g->g_ct_lock);
		st->mini_moves += g->g_mini_moves;
		if (gi < ARRAY_SIZE(st->table_depth))
			st->table_depth[gi] = g->g_ct_count;
		pthread_mutex_unlock(&g->g_ct_lock);
		pthread_mutex_lock(&g->g_mq_lock);
		if (gi < ARRAY_SIZE(st->main_depth))
			st->main_depth[gi] = g->g_mq_count;
		pthread_mutex_unlock(&g->g_mq_lock);
		for (ti = 0; ti < g->g_ntasks; ti++) {
			st->wakeups += waker_wakeups(&g->g_tasks[ti].t_waker);
			st->signals += waker_signals(&g->g_tasks[ti].t_waker);
		}
	}
	st->wakeups += waker_wakeups(&tg->tg_flush_waker);
	st->signals += waker_signals(&tg->tg_flush_waker);
}
