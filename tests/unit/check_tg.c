/*
 * check_tg.c: the range task-group engine held to DESIGN.md's invariants.
 *
 * Behaviour cases use a backend whose apply() blocks until the test lets it
 * go, so "runs at the same time" and "waits" are observed, not inferred.
 * The stress case runs random op streams against an in-memory backend with
 * random delays and checks each invariant as it happens, then compares the
 * final image with a sequential model byte for byte.
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
	struct tg_params p = { groups, tasks, range };
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

START_TEST(crossing_op_is_split_and_completes_once)
{
	struct tg *tg;
	struct tg_op a;
	int i, seen[2] = { 0, 0 };

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
	struct tg_params bad = { 1, 1, 3000 };
	struct tg_backend be = { ctl_apply, ctl_flush, NULL };

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
	struct tg_params p = { 3, 3, RANGE };
	struct tg_backend be = { stress_apply, stress_flush, NULL };
	struct tg *tg;
	uint64_t seq = 0, frontier = 0;
	unsigned i, seed = 1000 + (unsigned)_i;
	int r;

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
		/* Sparse sequence numbers: a gap counts as applied. */
		pthread_mutex_lock(&S.lock);
		for (k = seq + 1; k < seq + gap; k++) {
			S.known[k] = 1;
			stress_applied_locked(k);
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
		r = tg_submit(tg, op);
		ck_assert_msg(r == 0, "submit seq %llu frontier %llu type %d "
		    "off %llu len %llu: %d", (unsigned long long)op->seq,
		    (unsigned long long)op->frontier, op->type,
		    (unsigned long long)op->off, (unsigned long long)op->len, r);
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

static Suite *
tg_suite(void)
{
	Suite *s = suite_create("tg");
	TCase *tc;

	tc = tcase_create("Core");
	tcase_add_test(tc, disjoint_ops_run_in_parallel);
	tcase_add_test(tc, overlapping_ops_serialize_in_order);
	tcase_add_test(tc, crossing_op_is_split_and_completes_once);
	tcase_add_test(tc, many_range_op_is_split_everywhere);
	tcase_add_test(tc, flush_waits_for_everything_before_it);
	tcase_add_test(tc, flush_alone_completes);
	tcase_add_test(tc, op_waits_for_its_frontier);
	tcase_add_test(tc, without_frontier_disjoint_op_does_not_wait);
	suite_add_tcase(s, tc);

	tc = tcase_create("Errors");
	tcase_add_test(tc, ordering_contract_is_enforced);
	suite_add_tcase(s, tc);

	tc = tcase_create("Stress");
	tcase_set_timeout(tc, 120);
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
