/*
 * check_tg.c: the range task-group engine held to DESIGN.md's invariants.
 *
 * Behaviour cases use a backend whose apply() blocks until the test lets it
 * go, so "runs at the same time" and "waits" are observed, not inferred.
 * The stress case runs random op streams against an in-memory backend with
 * random delays and checks each invariant as it happens, then compares the
 * final image with a sequential model byte for byte.
 *
 * Every case runs under both wake-up policies (wake.h): the loop index
 * picks WAKE_ADAPTIVE (even) or WAKE_ALWAYS (odd). The Wake cases would
 * catch a lost wake-up (an op that never completes) and check that at
 * saturation the adaptive policy wakes tasks less often than it runs ops.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/tg.h"
#include "common/util.h"

/* The policy engines made by this test use; set from the loop index. */
static enum wake_policy POLICY;
/* Inline execution (tg.h) for the stress test: off, or always allowed. */
static uint32_t INLINE_NS;

static void
set_policy(int i)
{
	POLICY = i % 2 == 0 ? WAKE_ADAPTIVE : WAKE_ALWAYS;
	INLINE_NS = (i / 2) % 2 == 0 ? 0 : UINT32_MAX;
}

/* ---- a backend the test controls ------------------------------------ */

#define MAXEV 64

struct ctl {
	pthread_mutex_t	lock;
	pthread_cond_t	cond;
	int		block;		/* apply waits while this is set */
	int		inflight;	/* applies in progress */
	int		max_inflight;
	uint64_t	started[MAXEV];	/* seq of each apply, in start order */
	uint64_t	pieces[MAXEV][2];	/* off, len of each apply */
	int		nstarted;
	int		nfinished;
	int		flushes;
	int		finished_at_flush;	/* applies finished when flush ran */
	int		ndone;
	uint64_t	done_seq[MAXEV];
};

static struct ctl C;

static void
ctl_reset(int block)
{
	memset(&C, 0, sizeof(C));
	pthread_mutex_init(&C.lock, NULL);
	pthread_cond_init(&C.cond, NULL);
	C.block = block;
}

static int
ctl_apply(void *ctx, struct tg_op *op, uint64_t off, uint64_t len, void *buf)
{
	(void)ctx; (void)buf;
	pthread_mutex_lock(&C.lock);
	C.started[C.nstarted] = op->seq;
	C.pieces[C.nstarted][0] = off;
	C.pieces[C.nstarted][1] = len;
	C.nstarted++;
	C.inflight++;
	if (C.inflight > C.max_inflight)
		C.max_inflight = C.inflight;
	pthread_cond_broadcast(&C.cond);
	while (C.block)
		pthread_cond_wait(&C.cond, &C.lock);
	C.inflight--;
	C.nfinished++;
	pthread_cond_broadcast(&C.cond);
	pthread_mutex_unlock(&C.lock);
	return 0;
}

static int
ctl_flush(void *ctx)
{
	(void)ctx;
	pthread_mutex_lock(&C.lock);
	C.flushes++;
	C.finished_at_flush = C.nfinished;
	pthread_cond_broadcast(&C.cond);
	pthread_mutex_unlock(&C.lock);
	return 0;
}

static void
ctl_done(struct tg_op *op, int status)
{
	ck_assert_int_eq(status, 0);
	pthread_mutex_lock(&C.lock);
	C.done_seq[C.ndone++] = op->seq;
	pthread_cond_broadcast(&C.cond);
	pthread_mutex_unlock(&C.lock);
}

/* Waits up to 2 s for *v >= want; returns the value seen. */
static int
ctl_wait(int *v, int want)
{
	struct timespec ts;
	int seen;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 2;
	pthread_mutex_lock(&C.lock);
	while (*v < want &&
	    pthread_cond_timedwait(&C.cond, &C.lock, &ts) != ETIMEDOUT)
		;
	seen = *v;
	pthread_mutex_unlock(&C.lock);
	return seen;
}

/* Gives the engine time to do something it must not do. */
static void
settle(void)
{
	usleep(100 * 1000);
}

static void
ctl_release(void)
{
	pthread_mutex_lock(&C.lock);
	C.block = 0;
	pthread_cond_broadcast(&C.cond);
	pthread_mutex_unlock(&C.lock);
}

static struct tg *
mk(unsigned groups, unsigned tasks, uint64_t range)
{
	struct tg_params p = { .groups = groups, .tasks = tasks,
	    .range_size = range, .wake = POLICY };
	struct tg_backend be = { ctl_apply, ctl_flush, NULL };
	struct tg *tg;

	ck_assert_int_eq(tg_create(&tg, &p, &be), 0);
	return tg;
}

/* One group of two tasks with inline execution (tg.h) as given. */
static struct tg *
mk_inline(uint32_t inline_ns, int inline_flush)
{
	struct tg_params p = { .groups = 1, .tasks = 2, .range_size = 1 << 20,
	    .wake = POLICY, .inline_ns = inline_ns,
	    .inline_flush = inline_flush };
	struct tg_backend be = { ctl_apply, ctl_flush, NULL };
	struct tg *tg;

	ck_assert_int_eq(tg_create(&tg, &p, &be), 0);
	return tg;
}

static void
op_init(struct tg_op *op, enum tg_type type, uint64_t seq, uint64_t frontier,
    uint64_t off, uint64_t len)
{
	memset(op, 0, sizeof(*op));
	op->type = type;
	op->seq = seq;
	op->frontier = frontier;
	op->off = off;
	op->len = len;
	op->done = ctl_done;
}

/* ---- Core ----------------------------------------------------------- */

START_TEST(disjoint_ops_run_in_parallel)
{
	struct tg *tg;
	struct tg_op a, b;

	set_policy(_i);
	ctl_reset(1);
	tg = mk(1, 2, 1 << 20);		/* one group: same main queue */
	op_init(&a, TG_WRITE, 1, 0, 0, 4096);
	op_init(&b, TG_WRITE, 2, 0, 8192, 4096);
	ck_assert_int_eq(tg_submit(tg, &a), 0);
	ck_assert_int_eq(tg_submit(tg, &b), 0);
	ck_assert_int_eq(ctl_wait(&C.inflight, 2), 2);
	ck_assert_int_eq(C.max_inflight, 2);
	ctl_release();
	tg_destroy(tg);
	ck_assert_int_eq(C.ndone, 2);
}
END_TEST

START_TEST(overlapping_ops_serialize_in_order)
{
	struct tg *tg;
	struct tg_op a, b, c;
	struct tg_stats st;

	set_policy(_i);
	ctl_reset(1);
	tg = mk(1, 3, 1 << 20);
	op_init(&a, TG_WRITE, 1, 0, 0, 8192);
	op_init(&b, TG_WRITE, 2, 0, 4096, 8192);	/* overlaps a */
	op_init(&c, TG_WRITE, 3, 0, 0, 512);		/* overlaps a, not b */
	ck_assert_int_eq(tg_submit(tg, &a), 0);
	ck_assert_int_eq(ctl_wait(&C.nstarted, 1), 1);
	ck_assert_int_eq(tg_submit(tg, &b), 0);
	ck_assert_int_eq(tg_submit(tg, &c), 0);
	settle();
	/* Free tasks exist, yet neither b nor c may start while a runs. */
	ck_assert_int_eq(C.nstarted, 1);
	tg_get_stats(tg, &st);
	ck_assert_uint_ge(st.mini_moves, 2);	/* both queued behind a */
	ck_assert_uint_eq(st.table_depth[0], 3);
	ctl_release();
	tg_drain(tg);
	ck_assert_int_eq(C.nstarted, 3);
	ck_assert_uint_eq(C.started[0], 1);
	/* b and c each ran after a; b and c do not overlap each other. */
	ck_assert(C.started[1] != 1 && C.started[2] != 1);
	tg_destroy(tg);
}
END_TEST

/*
 * Inline execution: an op the engine could start at once is applied (and
 * done) inside tg_submit; one that overlaps an op a task still applies, or
 * is FUA, goes to the tasks and keeps its order.
 */
/*
 * Submits a FUA write (never run inline) that a task starts and then holds
 * until ctl_release(); returns once started applies have begun.
 */
static void
submit_held_fua(struct tg *tg, struct tg_op *op, uint64_t seq, uint64_t off,
    uint64_t len, int started)
{
	pthread_mutex_lock(&C.lock);
	C.block = 1;
	pthread_mutex_unlock(&C.lock);
	op_init(op, TG_WRITE, seq, 0, off, len);
	op->flags = TG_F_FUA;
	ck_assert_int_eq(tg_submit(tg, op), 0);
	ck_assert_int_eq(ctl_wait(&C.nstarted, started), started);
}

START_TEST(inline_only_when_nothing_older_overlaps)
{
	struct tg *tg;
	struct tg_op a, b, c, d;
	struct tg_stats st;

	set_policy(_i);
	ctl_reset(0);
	tg = mk_inline(UINT32_MAX, 0);
	op_init(&a, TG_WRITE, 1, 0, 0, 4096);
	ck_assert_int_eq(tg_submit(tg, &a), 0);
	ck_assert_int_eq(C.ndone, 1);		/* done before submit returned */
	tg_get_stats(tg, &st);
	ck_assert_uint_eq(st.inlined, 1);

	/* b is FUA: a task applies it, and blocks there. */
	submit_held_fua(tg, &b, 2, 0, 8192, 2);
	/* c overlaps b: it must wait for b, on a task. */
	op_init(&c, TG_WRITE, 3, 0, 4096, 4096);
	ck_assert_int_eq(tg_submit(tg, &c), 0);
	settle();
	ck_assert_int_eq(C.nstarted, 2);
	/* Once b and c are through, d runs inline again. */
	ctl_release();
	ck_assert_int_eq(ctl_wait(&C.nfinished, 3), 3);
	op_init(&d, TG_WRITE, 4, 0, 65536, 4096);
	ck_assert_int_eq(tg_submit(tg, &d), 0);
	tg_drain(tg);
	tg_get_stats(tg, &st);
	ck_assert_uint_eq(st.inlined, 2);	/* a and d */
	ck_assert_uint_eq(C.started[0], 1);
	ck_assert_uint_eq(C.started[1], 2);
	ck_assert_uint_eq(C.started[2], 3);	/* c only after b */
	ck_assert_uint_eq(C.started[3], 4);
	tg_destroy(tg);
}
END_TEST

/*
 * tg_submit_claim: an op that would run inline is held, not applied, until
 * tg_run_claimed or the dispatcher's next call into the engine, which
 * applies it first; the range stays held meanwhile, so order is kept. An
 * op that could not run inline is queued as by tg_submit (0).
 */
START_TEST(claimed_op_waits_for_run_or_the_next_call)
{
	struct tg *tg;
	struct tg_op a, b, c, e, f, g, h, i;
	struct tg_stats st;

	set_policy(_i);
	ctl_reset(0);
	tg = mk_inline(UINT32_MAX, 0);

	op_init(&a, TG_WRITE, 1, 0, 0, 4096);
	ck_assert_int_eq(tg_submit_claim(tg, &a), 1);
	settle();
	ck_assert_int_eq(C.nstarted, 0);	/* no task took it */
	tg_get_stats(tg, &st);
	ck_assert_uint_eq(st.inflight, 1);
	tg_run_claimed(tg);
	ck_assert_int_eq(C.ndone, 1);		/* applied and done inside */
	tg_run_claimed(tg);			/* nothing claimed: no-op */
	ck_assert_int_eq(C.nstarted, 1);

	/* c overlaps the claimed b: submitting c applies b first. */
	op_init(&b, TG_WRITE, 2, 0, 0, 8192);
	op_init(&c, TG_WRITE, 3, 0, 4096, 4096);
	ck_assert_int_eq(tg_submit_claim(tg, &b), 1);
	ck_assert_int_eq(tg_submit(tg, &c), 0);
	ck_assert_int_eq(ctl_wait(&C.nfinished, 3), 3);
	ck_assert_uint_eq(C.started[1], 2);
	ck_assert_uint_eq(C.started[2], 3);

	/* A FLUSH after a claimed write: the write is applied, then the
	 * flush runs after it. */
	op_init(&e, TG_WRITE, 4, 0, 65536, 4096);
	op_init(&f, TG_FLUSH, 5, 0, 0, 0);
	ck_assert_int_eq(tg_submit_claim(tg, &e), 1);
	ck_assert_int_eq(tg_submit(tg, &f), 0);
	ck_assert_int_eq(ctl_wait(&C.flushes, 1), 1);
	ck_assert_int_eq(C.finished_at_flush, 4);

	/* tg_drain applies a claimed op. */
	op_init(&g, TG_WRITE, 6, 0, 131072, 4096);
	ck_assert_int_eq(tg_submit_claim(tg, &g), 1);
	tg_drain(tg);
	ck_assert_int_eq(C.ndone, 6);

	/* i overlaps h, which a task holds: queued, not claimed. */
	submit_held_fua(tg, &h, 7, 0, 8192, 6);
	op_init(&i, TG_WRITE, 8, 0, 0, 4096);
	ck_assert_int_eq(tg_submit_claim(tg, &i), 0);
	settle();
	ck_assert_int_eq(C.nstarted, 6);
	ctl_release();
	tg_drain(tg);
	ck_assert_uint_eq(C.started[6], 8);
	tg_get_stats(tg, &st);
	ck_assert_uint_eq(st.inlined, 5);	/* a, b, c, e, g */
	tg_destroy(tg);
	ck_assert_int_eq(C.ndone, 8);
}
END_TEST

/* tg_op_extra: the piece array tg_submit allocates, beyond two kept in
 * the op; 1 MiB ranges here. */
START_TEST(op_extra_counts_pieces_beyond_the_inline_ones)
{
	struct tg *tg;
	const size_t pc = sizeof(struct tg_piece);

	set_policy(_i);
	tg = mk_inline(0, 0);
	ck_assert_uint_eq(tg_op_extra(tg, 0, 0), 0);
	ck_assert_uint_eq(tg_op_extra(tg, 0, 1 << 20), 0);
	ck_assert_uint_eq(tg_op_extra(tg, (1 << 20) - 4096, 8192), 0);
	ck_assert_uint_eq(tg_op_extra(tg, 0, 2 << 20), 0);
	ck_assert_uint_eq(tg_op_extra(tg, 4096, 2 << 20), 3 * pc);
	ck_assert_uint_eq(tg_op_extra(tg, 0, UINT64_C(4) << 30),
	    4096 * pc);
	tg_destroy(tg);
}
END_TEST

/*
 * tg_try_inline applies what tg_submit would apply inline and returns 1;
 * anything else (an older overlapping op on a task, a FLUSH, an op over
 * two ranges, a frontier not yet reached) is -EAGAIN and not taken: the
 * same op then goes to tg_submit, in order.
 */
START_TEST(try_inline_takes_nothing_it_cannot_apply)
{
	struct tg *tg;
	struct tg_op a, b, c, d, f, g;
	struct tg_stats st;

	set_policy(_i);
	ctl_reset(0);
	tg = mk_inline(UINT32_MAX, 0);
	op_init(&a, TG_WRITE, 1, 0, 0, 4096);
	ck_assert_int_eq(tg_try_inline(tg, &a), 1);
	ck_assert_int_eq(C.ndone, 1);		/* done before it returned */

	/* b is FUA, on a task that blocks; c overlaps it. */
	submit_held_fua(tg, &b, 2, 0, 8192, 2);
	op_init(&c, TG_WRITE, 3, 0, 4096, 4096);
	ck_assert_int_eq(tg_try_inline(tg, &c), -EAGAIN);
	op_init(&d, TG_WRITE, 3, 2, 65536, 4096);	/* frontier 2: b */
	ck_assert_int_eq(tg_try_inline(tg, &d), -EAGAIN);
	op_init(&f, TG_FLUSH, 3, 0, 0, 0);
	ck_assert_int_eq(tg_try_inline(tg, &f), -EAGAIN);
	op_init(&g, TG_WRITE, 3, 0, (1 << 20) - 4096, 8192);	/* 2 ranges */
	ck_assert_int_eq(tg_try_inline(tg, &g), -EAGAIN);
	op_init(&g, TG_WRITE, 3, 0, 4 << 20, 3 << 20);	/* 3: allocated */
	ck_assert_int_eq(tg_try_inline(tg, &g), -EAGAIN);
	tg_get_stats(tg, &st);
	ck_assert_uint_eq(st.inflight, 1);	/* only b */
	/* None was taken: seq 3 is still free, and c waits for b. */
	ck_assert_int_eq(tg_submit(tg, &c), 0);
	settle();
	ck_assert_int_eq(C.nstarted, 2);
	ctl_release();
	tg_drain(tg);
	ck_assert_uint_eq(C.started[2], 3);
	ck_assert_int_eq(C.ndone, 3);
	tg_get_stats(tg, &st);
	ck_assert_uint_eq(st.inlined, 1);
	tg_destroy(tg);
}
END_TEST

/*
 * With inline execution on, a FLUSH that finds nothing before it
 * incomplete runs inside tg_submit; one behind a write still in flight
 * waits for that write, on the flusher.
 */
START_TEST(flush_inline_only_when_nothing_is_before_it)
{
	struct tg *tg;
	struct tg_op f1, w, f2;
	struct tg_stats st;

	set_policy(_i);
	ctl_reset(0);
	tg = mk_inline(0, 1);
	op_init(&f1, TG_FLUSH, 1, 0, 0, 0);
	ck_assert_int_eq(tg_submit(tg, &f1), 0);
	ck_assert_int_eq(C.flushes, 1);		/* before submit returned */
	ck_assert_int_eq(C.ndone, 1);

	/* w blocks on a task; f2 waits for it. */
	submit_held_fua(tg, &w, 2, 0, 4096, 1);
	op_init(&f2, TG_FLUSH, 3, 0, 0, 0);
	ck_assert_int_eq(tg_submit(tg, &f2), 0);
	settle();
	ck_assert_int_eq(C.flushes, 1);
	ctl_release();
	tg_drain(tg);
	ck_assert_int_eq(C.flushes, 2);
	ck_assert_int_eq(C.finished_at_flush, 1);	/* after w */
	ck_assert_int_eq(C.ndone, 3);
	tg_get_stats(tg, &st);
	ck_assert_uint_eq(st.inlined, 1);		/* f1 only */
	tg_destroy(tg);
}
END_TEST

START_TEST(crossing_op_is_split_and_completes_once)
{
	struct tg *tg;
	struct tg_op a;
	int i, seen[2] = { 0, 0 };

	set_policy(_i);
	ctl_reset(0);
	tg = mk(2, 1, 65536);
	op_init(&a, TG_WRITE, 1, 0, 65536 - 4096, 8192);
	ck_assert_int_eq(tg_submit(tg, &a), 0);
	tg_drain(tg);
	ck_assert_int_eq(C.nstarted, 2);
	for (i = 0; i < 2; i++) {
		if (C.pieces[i][0] == 65536 - 4096 && C.pieces[i][1] == 4096)
			seen[0]++;
		if (C.pieces[i][0] == 65536 && C.pieces[i][1] == 4096)
			seen[1]++;
	}
	ck_assert_int_eq(seen[0], 1);
	ck_assert_int_eq(seen[1], 1);
	ck_assert_int_eq(C.ndone, 1);
	tg_destroy(tg);
}
END_TEST

START_TEST(many_range_op_is_split_everywhere)
{
	struct tg *tg;
	struct tg_op a;

	set_policy(_i);
	ctl_reset(0);
	tg = mk(3, 2, 65536);
	op_init(&a, TG_WRITE, 1, 0, 512, 5 * 65536);	/* six ranges */
	ck_assert_int_eq(tg_submit(tg, &a), 0);
	tg_drain(tg);
	ck_assert_int_eq(C.nstarted, 6);
	ck_assert_int_eq(C.ndone, 1);
	tg_destroy(tg);
}
END_TEST

START_TEST(flush_waits_for_everything_before_it)
{
	struct tg *tg;
	struct tg_op a, b, f, d;

	set_policy(_i);
	ctl_reset(1);
	tg = mk(2, 2, 65536);
	op_init(&a, TG_WRITE, 1, 0, 0, 4096);
	op_init(&b, TG_WRITE, 2, 0, 65536, 4096);	/* other group */
	op_init(&f, TG_FLUSH, 3, 0, 0, 0);
	op_init(&d, TG_WRITE, 4, 0, 4 * 65536, 4096);	/* after the flush */
	ck_assert_int_eq(tg_submit(tg, &a), 0);
	ck_assert_int_eq(tg_submit(tg, &b), 0);
	ck_assert_int_eq(tg_submit(tg, &f), 0);
	ck_assert_int_eq(tg_submit(tg, &d), 0);
	ck_assert_int_eq(ctl_wait(&C.nstarted, 3), 3);
	settle();
	ck_assert_int_eq(C.flushes, 0);
	ctl_release();
	tg_drain(tg);
	ck_assert_int_eq(C.flushes, 1);
	/* Both writes before the flush had finished when it ran. */
	ck_assert_int_ge(C.finished_at_flush, 2);
	tg_destroy(tg);
}
END_TEST

START_TEST(flush_alone_completes)
{
	struct tg *tg;
	struct tg_op f;

	set_policy(_i);
	ctl_reset(0);
	tg = mk(1, 1, 65536);
	op_init(&f, TG_FLUSH, 1, 0, 0, 0);
	ck_assert_int_eq(tg_submit(tg, &f), 0);
	ck_assert_int_eq(ctl_wait(&C.ndone, 1), 1);
	ck_assert_int_eq(C.flushes, 1);
	tg_destroy(tg);
}
END_TEST

START_TEST(op_waits_for_its_frontier)
{
	struct tg *tg;
	struct tg_op a, b, c;

	set_policy(_i);
	ctl_reset(1);
	tg = mk(4, 2, 65536);
	op_init(&a, TG_WRITE, 1, 0, 0, 4096);
	op_init(&b, TG_WRITE, 2, 1, 65536, 4096);	/* disjoint, needs 1 */
	op_init(&c, TG_WRITE, 3, 0 + 1, 2 * 65536, 4096);
	ck_assert_int_eq(tg_submit(tg, &a), 0);
	ck_assert_int_eq(ctl_wait(&C.nstarted, 1), 1);
	ck_assert_int_eq(tg_submit(tg, &b), 0);
	ck_assert_int_eq(tg_submit(tg, &c), 0);
	settle();
	ck_assert_int_eq(C.nstarted, 1);	/* b and c held at the gate */
	ctl_release();
	tg_drain(tg);
	ck_assert_int_eq(C.nstarted, 3);
	ck_assert_uint_eq(C.started[0], 1);
	tg_destroy(tg);
}
END_TEST

START_TEST(without_frontier_disjoint_op_does_not_wait)
{
	struct tg *tg;
	struct tg_op a, b;

	set_policy(_i);
	ctl_reset(1);
	tg = mk(4, 2, 65536);
	op_init(&a, TG_WRITE, 1, 0, 0, 4096);
	op_init(&b, TG_WRITE, 2, 0, 65536, 4096);
	ck_assert_int_eq(tg_submit(tg, &a), 0);
	ck_assert_int_eq(tg_submit(tg, &b), 0);
	ck_assert_int_eq(ctl_wait(&C.nstarted, 2), 2);
	ctl_release();
	tg_destroy(tg);
}
END_TEST

/* ---- Errors ---------------------------------------------------------- */

START_TEST(ordering_contract_is_enforced)
{
	struct tg *tg;
	struct tg_op a, b;
	struct tg_params bad = { .groups = 1, .tasks = 1, .range_size = 3000 };
	struct tg_backend be = { ctl_apply, ctl_flush, NULL };

	set_policy(_i);
	ctl_reset(0);
	ck_assert_int_eq(tg_create(&tg, &bad, &be), -EINVAL);
	tg = mk(1, 1, 65536);
	op_init(&a, TG_WRITE, 5, 3, 0, 4096);
	ck_assert_int_eq(tg_submit(tg, &a), 0);
	op_init(&b, TG_WRITE, 5, 3, 0, 4096);	/* seq not increasing */
	ck_assert_int_eq(tg_submit(tg, &b), -EINVAL);
	op_init(&b, TG_WRITE, 6, 2, 0, 4096);	/* frontier decreasing */
	ck_assert_int_eq(tg_submit(tg, &b), -EINVAL);
	op_init(&b, TG_WRITE, 7, 7, 0, 4096);	/* frontier >= seq */
	ck_assert_int_eq(tg_submit(tg, &b), -EINVAL);
	op_init(&b, TG_WRITE, 8, 4, 0, 0);	/* empty span */
	ck_assert_int_eq(tg_submit(tg, &b), -EINVAL);
	op_init(&b, TG_WRITE, 9, 4, UINT64_MAX - 10, 4096);	/* wraps */
	ck_assert_int_eq(tg_submit(tg, &b), -EINVAL);
	op_init(&b, TG_WRITE, 10, 4, 0, 4096);	/* still usable */
	ck_assert_int_eq(tg_submit(tg, &b), 0);
	tg_destroy(tg);
	ck_assert_int_eq(C.ndone, 2);
}
END_TEST

/* ---- Stress: random streams against a sequential model ---------------- */

#define VOL      (1u << 20)	/* 1 MiB volume */
#define BLK      512u
#define NBLK     (VOL / BLK)
#define RANGE    65536u		/* 16 ranges */
#define OPS      5000		/* per seed; 20 seeds */
#define WINDOW   256
#define MAXSEQ   (3 * OPS + 8)

struct stress {
	pthread_mutex_t	 lock;
	pthread_cond_t	 cond;
	uint8_t		*image;		/* what the engine wrote */
	uint8_t		*model;		/* sequential model */
	uint64_t	 last_seq[NBLK];	/* per block, last applied seq */
	uint8_t		 known[MAXSEQ];		/* seq submitted, or a gap */
	uint8_t		 npieces[MAXSEQ];	/* pieces expected per seq */
	uint8_t		 napplied[MAXSEQ];
	uint64_t	 contig;	/* all seqs <= contig applied */
	uint64_t	 flushq[OPS];	/* submitted flushes, in order */
	unsigned	 flush_head, flush_tail;
	unsigned	 inflight;
	unsigned	 violations;
	char		 why[256];
	unsigned	 seed;
};

static struct stress S;

static void
stress_fail_locked(const char *what, uint64_t a, uint64_t b)
{
	if (S.violations++ == 0)
		snprintf(S.why, sizeof(S.why), "seed %u: %s (%llu, %llu)",
		    S.seed, what, (unsigned long long)a, (unsigned long long)b);
}

/* Marks seq applied and advances the contiguous mark. S.lock held. */
static void
stress_applied_locked(uint64_t seq)
{
	S.napplied[seq] = S.npieces[seq];
	while (S.contig + 1 < MAXSEQ && S.known[S.contig + 1] &&
	    S.napplied[S.contig + 1] == S.npieces[S.contig + 1])
		S.contig++;
}

static int
stress_apply(void *ctx, struct tg_op *op, uint64_t off, uint64_t len,
    void *buf)
{
	uint64_t b;
	unsigned r = (unsigned)(op->seq * 2654435761u);

	(void)ctx;
	pthread_mutex_lock(&S.lock);
	if (S.contig < op->frontier)
		stress_fail_locked("applied before its frontier", op->seq,
		    op->frontier);
	for (b = off / BLK; b < (off + len) / BLK; b++) {
		if (S.last_seq[b] >= op->seq)
			stress_fail_locked("overlap applied out of order",
			    S.last_seq[b], op->seq);
		S.last_seq[b] = op->seq;
	}
	pthread_mutex_unlock(&S.lock);

	/* Random delays, so pieces finish out of order. */
	if (r % 8 == 0)
		usleep(r % 200);
	else if (r % 8 == 1)
		sched_yield();

	if (op->type == TG_WRITE)
		memcpy(S.image + off, buf, len);
	else
		memset(S.image + off, 0, len);

	pthread_mutex_lock(&S.lock);
	if (++S.napplied[op->seq] == S.npieces[op->seq])
		stress_applied_locked(op->seq);
	pthread_mutex_unlock(&S.lock);
	return 0;
}

static int
stress_flush(void *ctx)
{
	uint64_t seq;

	(void)ctx;
	pthread_mutex_lock(&S.lock);
	if (S.flush_head == S.flush_tail) {
		stress_fail_locked("flush not submitted", 0, 0);
	} else {
		seq = S.flushq[S.flush_head++];
		if (S.contig < seq - 1)
			stress_fail_locked("flush before earlier ops", seq,
			    S.contig);
		S.npieces[seq] = 1;
		stress_applied_locked(seq);
	}
	pthread_mutex_unlock(&S.lock);
	return 0;
}

static void
stress_done(struct tg_op *op, int status)
{
	pthread_mutex_lock(&S.lock);
	if (status != 0)
		stress_fail_locked("op failed", op->seq, (uint64_t)-status);
	if (op->type == TG_FLUSH && S.contig < op->seq)
		stress_fail_locked("flush done before it applied", op->seq, 0);
	S.inflight--;
	pthread_cond_signal(&S.cond);
	pthread_mutex_unlock(&S.lock);
	free(op->buf);
	free(op);
}

START_TEST(stress_matches_sequential_model)
{
	struct tg_params p = { .groups = 3, .tasks = 3, .range_size = RANGE,
	    .wake = POLICY, .inline_ns = INLINE_NS };
	struct tg_backend be = { stress_apply, stress_flush, NULL };
	struct tg *tg;
	uint64_t seq = 0, frontier = 0;
	unsigned i, seed = 1000 + (unsigned)_i;
	int r;

	set_policy(_i);
	memset(&S, 0, sizeof(S));
	pthread_mutex_init(&S.lock, NULL);
	pthread_cond_init(&S.cond, NULL);
	S.seed = seed;
	S.image = calloc(1, VOL);
	S.model = calloc(1, VOL);
	ck_assert_ptr_nonnull(S.image);
	ck_assert_ptr_nonnull(S.model);
	srandom(seed);
	ck_assert_int_eq(tg_create(&tg, &p, &be), 0);

	for (i = 0; i < OPS; i++) {
		struct tg_op *op = calloc(1, sizeof(*op));
		uint64_t gap = (random() % 16 == 0) ? 2 : 1, k;

		ck_assert_ptr_nonnull(op);
		/* A claimed op (below) is applied now, or by the next
		 * submit; the window never waits on one. */
		if (random() % 2)
			tg_run_claimed(tg);
		/* Sparse sequence numbers: a gap counts as applied. */
		pthread_mutex_lock(&S.lock);
		for (k = seq + 1; k < seq + gap; k++) {
			S.known[k] = 1;
			stress_applied_locked(k);
		}
		if (S.inflight >= WINDOW) {
			pthread_mutex_unlock(&S.lock);
			tg_run_claimed(tg);
			pthread_mutex_lock(&S.lock);
		}
		while (S.inflight >= WINDOW)
			pthread_cond_wait(&S.cond, &S.lock);
		pthread_mutex_unlock(&S.lock);
		seq += gap;
		op->seq = seq;
		op->done = stress_done;

		/* Frontiers never decrease; sometimes they jump close. */
		r = (int)(random() % 100);
		if (r < 10)
			frontier = seq - 1;
		else if (r < 40 && seq > 20) {
			uint64_t f = seq - 1 - (uint64_t)(random() % 20);
			frontier = MAX(frontier, f);
		}
		op->frontier = frontier;

		r = (int)(random() % 100);
		if (r < 3) {
			op->type = TG_FLUSH;
			pthread_mutex_lock(&S.lock);
			S.npieces[seq] = 0xff;	/* set by the flush itself */
			S.known[seq] = 1;
			S.flushq[S.flush_tail++] = seq;
			pthread_mutex_unlock(&S.lock);
		} else {
			uint64_t nb = 1 + (uint64_t)(random() % 256);	/* <=128K */
			uint64_t first;

			/* Half the ops land on a small hot region. */
			if (random() % 2)
				first = (uint64_t)(random() % 64) + RANGE / BLK - 32;
			else
				first = (uint64_t)random() % NBLK;
			if (first + nb > NBLK)
				nb = NBLK - first;
			op->off = first * BLK;
			op->len = nb * BLK;
			op->type = r < 80 ? TG_WRITE : (r < 90 ? TG_WRITE_ZEROES :
			    TG_TRIM);
			if (op->type == TG_WRITE) {
				uint8_t *d = malloc(op->len);
				uint64_t j;

				ck_assert_ptr_nonnull(d);
				for (j = 0; j < op->len; j++)
					d[j] = (uint8_t)(seq * 131 + j * 7);
				memcpy(S.model + op->off, d, op->len);
				op->buf = d;
			} else {
				memset(S.model + op->off, 0, op->len);
			}
			pthread_mutex_lock(&S.lock);
			S.npieces[seq] = (uint8_t)((op->off + op->len - 1) /
			    RANGE - op->off / RANGE + 1);
			S.known[seq] = 1;
			pthread_mutex_unlock(&S.lock);
		}
		pthread_mutex_lock(&S.lock);
		S.inflight++;
		pthread_mutex_unlock(&S.lock);
		/* op may be done and freed (inline) when tg_submit returns;
		 * claimed (r 1), not before tg_run_claimed or the next call. */
		r = random() % 2 ? tg_submit_claim(tg, op) : tg_submit(tg, op);
		ck_assert_msg(r == 0 || (r == 1 && INLINE_NS != 0),
		    "submit seq %llu frontier %llu: %d",
		    (unsigned long long)seq, (unsigned long long)frontier, r);
	}
	tg_destroy(tg);
	ck_assert_msg(S.violations == 0, "%u violations, first: %s",
	    S.violations, S.why);
	ck_assert_uint_eq(S.inflight, 0);
	ck_assert_uint_eq(S.contig, seq);
	ck_assert_msg(memcmp(S.image, S.model, VOL) == 0,
	    "seed %u: image differs from the sequential model", seed);
	free(S.image);
	free(S.model);
}
END_TEST

/* ---- Wake: no lost wake-up, fewer wake-ups when busy ------------------ */

#define LW_THREADS	6
#define LW_OPS		400	/* per thread, one at a time */
#define LW_SECONDS	10	/* for all of them: a lost wake-up hangs */

/*
 * Several submitter threads, each with one op in flight at a time and a
 * random pause before the next, so the engine keeps going idle and waking
 * up from every side: the dispatcher (main queues), the gate (frontiers),
 * mini-queue hand-offs (overlaps) and the flusher. Submissions go through
 * one mutex, as tg_submit wants one dispatcher at a time.
 */
struct lw {
	pthread_mutex_t	 lock;		/* submission: seq and frontier */
	pthread_cond_t	 cond;		/* completions */
	struct tg	*tg;
	uint64_t	 seq;
	uint64_t	 frontier;
	uint64_t	 deadline_s;	/* CLOCK_REALTIME */
	unsigned	 done[LW_THREADS];
	unsigned	 stuck;		/* threads that gave up waiting */
	unsigned	 failed;
};

static struct lw LW;

struct lw_op {
	struct tg_op	 op;
	unsigned	 thread;
	unsigned char	 buf[8192];
};

static int
lw_apply(void *ctx, struct tg_op *op, uint64_t off, uint64_t len, void *buf)
{
	unsigned r = (unsigned)(op->seq * 2654435761u) >> 8;
	volatile unsigned char sink;

	(void)ctx; (void)off;
	if (buf != NULL)
		sink = ((unsigned char *)buf)[len - 1];
	(void)sink;
	if (r % 16 == 0)
		usleep(r % 300);
	else if (r % 16 == 1)
		sched_yield();
	return 0;
}

static int
lw_flush(void *ctx)
{
	(void)ctx;
	return 0;
}

static void
lw_done(struct tg_op *op, int status)
{
	struct lw_op *o = (struct lw_op *)op;

	pthread_mutex_lock(&LW.lock);
	if (status != 0)
		LW.failed++;
	LW.done[o->thread]++;
	pthread_cond_broadcast(&LW.cond);
	pthread_mutex_unlock(&LW.lock);
}

static void *
lw_thread(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg, i, want;
	unsigned rng = 7919u * (me + 1) + (unsigned)POLICY;
	struct lw_op *o = calloc(1, sizeof(*o));
	struct timespec ts = { (time_t)LW.deadline_s, 0 };
	int rc = 0;

	if (o == NULL) {
		__atomic_add_fetch(&LW.failed, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	for (i = 0; i < LW_OPS; i++) {
		rng = rng * 1103515245u + 12345u;
		/* Pauses from none to 0.5 ms: idle and busy both happen. */
		switch ((rng >> 16) % 4) {
		case 0:
			break;
		case 1:
			sched_yield();
			break;
		default:
			usleep((rng >> 8) % 500);
			break;
		}
		memset(&o->op, 0, sizeof(o->op));
		o->thread = me;
		o->op.done = lw_done;
		pthread_mutex_lock(&LW.lock);
		want = LW.done[me] + 1;
		o->op.seq = ++LW.seq;
		if ((rng >> 4) % 8 == 0)
			LW.frontier = LW.seq - 1;	/* waits for all before */
		o->op.frontier = LW.frontier;
		if ((rng >> 7) % 16 == 0) {
			o->op.type = TG_FLUSH;
		} else {
			o->op.type = TG_WRITE;
			/* 4 ranges of 64 KiB; overlaps are frequent. */
			o->op.off = ((rng >> 9) % 64) * 4096;
			o->op.len = 4096 * (1 + (rng >> 3) % 2);
			o->op.buf = o->buf;
		}
		rc = tg_submit(LW.tg, &o->op);
		if (rc != 0) {
			LW.failed++;
			pthread_mutex_unlock(&LW.lock);
			break;
		}
		while (LW.done[me] < want && rc != ETIMEDOUT)
			rc = pthread_cond_timedwait(&LW.cond, &LW.lock, &ts);
		if (LW.done[me] < want) {
			LW.stuck++;
			pthread_mutex_unlock(&LW.lock);
			/* The op is still the engine's: leak it, do not free. */
			return NULL;
		}
		pthread_mutex_unlock(&LW.lock);
	}
	free(o);
	return NULL;
}

START_TEST(no_lost_wakeup_with_single_ops)
{
	struct tg_params p = { .groups = 2, .tasks = 3, .range_size = 65536 };
	struct tg_backend be = { lw_apply, lw_flush, NULL };
	pthread_t th[LW_THREADS];
	struct timespec now;
	unsigned i, total = 0;

	set_policy(_i);
	p.wake = POLICY;
	memset(&LW, 0, sizeof(LW));
	pthread_mutex_init(&LW.lock, NULL);
	pthread_cond_init(&LW.cond, NULL);
	clock_gettime(CLOCK_REALTIME, &now);
	LW.deadline_s = (uint64_t)now.tv_sec + LW_SECONDS;
	ck_assert_int_eq(tg_create(&LW.tg, &p, &be), 0);
	for (i = 0; i < LW_THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, lw_thread,
		    (void *)(uintptr_t)i), 0);
	for (i = 0; i < LW_THREADS; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < LW_THREADS; i++)
		total += LW.done[i];
	/* Before tg_destroy: a stuck op would make it wait for ever. */
	ck_assert_msg(LW.stuck == 0, "%s: %u threads waited more than %d s "
	    "for an op (%u of %u done): a lost wake-up",
	    POLICY == WAKE_ADAPTIVE ? "adaptive" : "always", LW.stuck,
	    LW_SECONDS, total, LW_THREADS * LW_OPS);
	ck_assert_uint_eq(LW.failed, 0);
	ck_assert_uint_eq(total, LW_THREADS * LW_OPS);
	tg_destroy(LW.tg);
}
END_TEST

#define SAT_OPS		20000
#define SAT_WINDOW	64

/*
 * At saturation (up to 64 ops queued, refilled 32 at a time, a backend with
 * a little work), woken tasks drain what was queued since instead of
 * sleeping between ops: adaptive must wake tasks fewer times than it runs
 * ops. A count, not a timing.
 */
struct sat {
	pthread_mutex_t	 lock;
	pthread_cond_t	 cond;
	struct tg_op	*freel[SAT_WINDOW];	/* ops back from the engine */
	unsigned	 nfree;
	unsigned	 waiting;
	unsigned	 done;
};

static struct sat SAT;

static int
sat_apply(void *ctx, struct tg_op *op, uint64_t off, uint64_t len, void *buf)
{
	uint64_t t0 = now_ns();

	(void)ctx; (void)op; (void)off; (void)len; (void)buf;
	while (now_ns() - t0 < 2000)	/* 2 us of work */
		;
	return 0;
}

static void
sat_done(struct tg_op *op, int status)
{
	pthread_mutex_lock(&SAT.lock);
	if (status == 0)
		SAT.done++;
	SAT.freel[SAT.nfree++] = op;
	if (SAT.waiting)
		pthread_cond_signal(&SAT.cond);
	pthread_mutex_unlock(&SAT.lock);
}

START_TEST(adaptive_wakes_less_than_once_per_op_at_saturation)
{
	struct tg_params p = { .groups = 1, .tasks = 2, .range_size = 1 << 20 };
	struct tg_backend be = { sat_apply, lw_flush, NULL };
	struct tg_op *ops = calloc(SAT_WINDOW, sizeof(*ops)), *op;
	struct tg_stats st;
	struct tg *tg;
	unsigned i;
	uint64_t seq = 0;

	ck_assert_ptr_nonnull(ops);
	memset(&SAT, 0, sizeof(SAT));
	pthread_mutex_init(&SAT.lock, NULL);
	pthread_cond_init(&SAT.cond, NULL);
	ck_assert_int_eq(tg_create(&tg, &p, &be), 0);
	for (i = 0; i < SAT_WINDOW; i++)
		SAT.freel[SAT.nfree++] = &ops[i];
	while (seq < SAT_OPS) {
		struct tg_op *burst[SAT_WINDOW];
		unsigned n = 0;

		/* Half the window back before refilling: bursts, as under load. */
		pthread_mutex_lock(&SAT.lock);
		SAT.waiting = 1;
		while (SAT.nfree < SAT_WINDOW / 2)
			pthread_cond_wait(&SAT.cond, &SAT.lock);
		SAT.waiting = 0;
		while (SAT.nfree > 0 && seq + n < SAT_OPS)
			burst[n++] = SAT.freel[--SAT.nfree];
		pthread_mutex_unlock(&SAT.lock);
		for (i = 0; i < n; i++) {
			op = burst[i];
			memset(op, 0, sizeof(*op));
			op->seq = ++seq;
			op->type = TG_TRIM;
			op->off = (seq % 256) * 4096;	/* one range, no overlap */
			op->len = 4096;
			op->done = sat_done;
			ck_assert_int_eq(tg_submit(tg, op), 0);
		}
	}
	tg_drain(tg);
	tg_get_stats(tg, &st);
	tg_destroy(tg);
	ck_assert_uint_eq(SAT.done, SAT_OPS);
	fprintf(stderr, "adaptive at saturation: %llu wake-ups, %llu signals "
	    "for %u ops\n", (unsigned long long)st.wakeups,
	    (unsigned long long)st.signals, SAT_OPS);
	ck_assert_msg(st.wakeups < SAT_OPS, "%llu wake-ups for %u ops",
	    (unsigned long long)st.wakeups, SAT_OPS);
	free(ops);
}
END_TEST

static Suite *
tg_suite(void)
{
	Suite *s = suite_create("tg");
	TCase *tc;

	tc = tcase_create("Core");
	tcase_add_loop_test(tc, disjoint_ops_run_in_parallel, 0, 2);
	tcase_add_loop_test(tc, overlapping_ops_serialize_in_order, 0, 2);
	tcase_add_loop_test(tc, crossing_op_is_split_and_completes_once, 0, 2);
	tcase_add_loop_test(tc, many_range_op_is_split_everywhere, 0, 2);
	tcase_add_loop_test(tc, flush_waits_for_everything_before_it, 0, 2);
	tcase_add_loop_test(tc, flush_alone_completes, 0, 2);
	tcase_add_loop_test(tc, op_waits_for_its_frontier, 0, 2);
	tcase_add_loop_test(tc, without_frontier_disjoint_op_does_not_wait,
	    0, 2);
	tcase_add_loop_test(tc, inline_only_when_nothing_older_overlaps, 0, 2);
	tcase_add_loop_test(tc, claimed_op_waits_for_run_or_the_next_call, 0,
	    2);
	tcase_add_loop_test(tc, try_inline_takes_nothing_it_cannot_apply, 0,
	    2);
	tcase_add_loop_test(tc, op_extra_counts_pieces_beyond_the_inline_ones,
	    0, 2);
	tcase_add_loop_test(tc, flush_inline_only_when_nothing_is_before_it, 0,
	    2);
	suite_add_tcase(s, tc);

	tc = tcase_create("Errors");
	tcase_add_loop_test(tc, ordering_contract_is_enforced, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("Wake");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, no_lost_wakeup_with_single_ops, 0, 2);
	tcase_add_test(tc, adaptive_wakes_less_than_once_per_op_at_saturation);
	suite_add_tcase(s, tc);

	tc = tcase_create("Stress");
	tcase_set_timeout(tc, 120);
	/* Loop index: wake policy (i % 2), inline execution (i / 2 % 2). */
	tcase_add_loop_test(tc, stress_matches_sequential_model, 0, 20);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(tg_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
