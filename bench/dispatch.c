/*
 * dispatch.c: wake-ups per op and op latency of the engine's dispatch,
 * always-signal against adaptive (common/wake.c, DESIGN.md "Adaptive
 * wake-ups").
 *
 * The shape of a daemon: one event thread (a libevent loop) submits 4 KiB
 * writes with tg_submit, the task groups apply them, and each op's done()
 * hands it back through a completion queue (common/cq.c) whose drain
 * callback, on the event thread, records the op's latency and submits the
 * next. The same policy is given to the engine (tg_params.wake) and to the
 * completion queue (cq_set_policy), so a point measures every wake-up an op
 * costs: a task woken for it (main queue, mini queue, flusher) and the
 * event thread woken for its completion.
 *
 * The backend does a little work so the dispatch cost shows: apply()
 * copies the 4 KiB into a 4 MiB in-memory volume and spins until --work-ns
 * (default 2 us) have passed since it started. Op i writes at (i % 4096) *
 * 64 KiB with range_size 1 MiB, so ops in flight never overlap and spread
 * over every group.
 *
 * Loads:
 *   idle  one op at a time, and the next one only GAP_US after the last
 *         completed (a timer on the event thread): each op finds the engine
 *         asleep. This is the latency that must not get worse.
 *   qd1   one op at a time, back to back.
 *   sat   QD ops in flight (--qd, default 64), refilled as they complete.
 *
 * Each point runs ROUNDS times for --seconds / ROUNDS, always-signal and
 * adaptive taking turns, and the figures are over all its rounds: the
 * machine is shared, and its load drifts from one second to the next.
 *
 * Columns, per point: ops/s; wake/op = wake-ups per op (tasks and flusher
 * woken from their condition variable, plus completion-queue kicks of the
 * event thread); task/op and cq/op split it; vcs/op = voluntary context
 * switches of the whole process per op (getrusage; an independent count of
 * sleeps); cpu_us/op (user + sys); p50 and p99 latency from tg_submit to
 * the drain callback seeing the completion; others = CPUs kept busy by
 * other processes meanwhile (from /proc/stat, as in bench/engine): on a
 * shared machine every figure depends on it.
 *
 * Measured, never asserted: the exit status is non-zero only for a real
 * error.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "bench/util/benchutil.h"
#include "common/cq.h"
#include "common/tg.h"
#include "common/util.h"
#include "common/wake.h"

#define OP_LEN		4096u
#define RANGE_SIZE	(1ull << 20)
#define STRIDE		(64ull << 10)
#define SLOTS		4096u
#define VOL_BLOCKS	1024u		/* the in-memory volume: 4 MiB */
#define GAP_US		200
#define MAX_QD		1024u
#define MAX_LAT		(2u << 20)	/* latencies kept per point */
#define ROUNDS		3

enum load { LOAD_IDLE, LOAD_QD1, LOAD_SAT, NLOADS };

static const char *const load_name[] = { "idle", "qd1", "sat" };
static const char *const policy_name[] = { "adaptive", "always" };

static struct {
	double		seconds;
	uint64_t	work_ns;
	unsigned	qd;
	unsigned	groups, tasks;
	int		policy_mask;	/* bit per enum wake_policy */
	int		load_mask;	/* bit per enum load */
} opt = { 1.0, 2000, 64, 2, 2, 3, 7 };

static unsigned char *vol;

struct bop {
	struct tg_op	 op;
	struct cq_node	 node;
	struct bop	*next;
	uint64_t	 t_submit;
	unsigned char	 buf[OP_LEN];
};

struct run {
	struct event_base *base;
	struct event	*gap_ev;
	struct cq	 cq;
	struct tg	*tg;
	enum load	 load;
	unsigned	 depth;		/* ops to keep in flight */
	struct bop	*avail;
	unsigned	 inflight;
	uint64_t	 seq;
	uint64_t	 done;
	uint64_t	 deadline;
	int		 stopping;	/* past the deadline: no new ops */
	int		 error;		/* atomic */
	uint32_t	*lat;		/* ns, the point's array */
	size_t		*nlat;
};

/* Sums over a point's rounds, then the figures made of them. */
struct point {
	int		ran;
	uint64_t	ns;
	uint64_t	ops;
	uint64_t	task_wakeups, cq_wakeups;
	uint64_t	vcs;
	double		cpu_us;
	double		other_us;	/* CPU time of other processes */
	uint32_t	*lat;
	size_t		nlat;

	double		ops_s;
	double		wake_per_op, task_per_op, cq_per_op;
	double		vcs_per_op, cpu_us_per_op;
	double		p50_us, p99_us;
	double		others;
};

/* ---- backend: a copy and a few microseconds of work ------------------ */

static int
work_apply(void *ctx, struct tg_op *op, uint64_t off, uint64_t len,
    void *buf)
{
	uint64_t t0 = now_ns();

	(void)ctx; (void)op;
	memcpy(vol + ((off / STRIDE) % VOL_BLOCKS) * OP_LEN, buf, len);
	while (now_ns() - t0 < opt.work_ns)
		;
	return 0;
}

static int
work_flush(void *ctx)
{
	(void)ctx;
	return 0;
}

/* ---- the event thread ------------------------------------------------- */

/* Engine thread: back to the event thread through the completion queue. */
static void
op_done(struct tg_op *op, int status)
{
	struct bop *b = CONTAINER_OF(op, struct bop, op);
	struct run *r = op->arg;

	if (status != 0) {
		int expected = 0;
		__atomic_compare_exchange_n(&r->error, &expected, status, 0,
		    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
	}
	cq_push(&r->cq, &b->node);
}

static void
submit_one(struct run *r)
{
	struct bop *b = r->avail;
	struct tg_op *op = &b->op;
	int rc;

	r->avail = b->next;
	memset(op, 0, sizeof(*op));
	op->seq = ++r->seq;
	op->type = TG_WRITE;
	op->off = (r->seq % SLOTS) * STRIDE;
	op->len = OP_LEN;
	op->buf = b->buf;
	op->done = op_done;
	op->arg = r;
	b->buf[0] = (unsigned char)r->seq;
	r->inflight++;
	b->t_submit = now_ns();
	if ((rc = tg_submit(r->tg, op)) != 0)
		bench_die("tg_submit(seq %llu): %s", (unsigned long long)r->seq,
		    strerror(-rc));
}

static void
submit_more(struct run *r)
{
	if (!r->stopping && now_ns() >= r->deadline)
		r->stopping = 1;
	while (!r->stopping && r->inflight < r->depth && r->avail != NULL)
		submit_one(r);
	if (r->stopping && r->inflight == 0)
		event_base_loopexit(r->base, NULL);
}

static void
gap_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what;
	submit_more(arg);
}

static void
drain(evutil_socket_t fd, short what, void *arg)
{
	struct run *r = arg;
	struct cq_node *n, *next;
	uint64_t now;

	(void)fd; (void)what;
	n = cq_take(&r->cq);
	now = now_ns();	/* after the take: it may have waited for n */
	for (; n != NULL; n = next) {
		struct bop *b = CONTAINER_OF(n, struct bop, node);

		next = n->cq_next;
		if (*r->nlat < MAX_LAT)
			r->lat[(*r->nlat)++] = (uint32_t)MIN(now - b->t_submit,
			    UINT32_MAX);
		b->next = r->avail;
		r->avail = b;
		r->inflight--;
		r->done++;
	}
	if (r->load == LOAD_IDLE && r->inflight == 0 && !r->stopping &&
	    now < r->deadline) {
		static const struct timeval gap = { 0, GAP_US };

		evtimer_add(r->gap_ev, &gap);
		return;
	}
	submit_more(r);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* One round of a point: adds to pt's sums. */
static void
run_round(struct point *pt, enum wake_policy policy, enum load load,
    struct bop *pool, double seconds)
{
	struct tg_params tp = {
		.groups = opt.groups, .tasks = opt.tasks,
		.range_size = RANGE_SIZE, .wake = policy,
	};
	struct tg_backend be = { work_apply, work_flush, NULL };
	struct event_config *cfg;
	struct run r;
	struct tg_stats st;
	struct rusage ru0, ru1;
	struct bench_cpu ct0, ct1;
	uint64_t t0, t1, cqw;
	double own_us;
	unsigned i;
	int rc;

	memset(&r, 0, sizeof(r));
	r.load = load;
	r.depth = load == LOAD_SAT ? opt.qd : 1;
	if (pt->lat == NULL && (pt->lat = calloc(MAX_LAT,
	    sizeof(*pt->lat))) == NULL)
		bench_die("out of memory");
	r.lat = pt->lat;
	r.nlat = &pt->nlat;
	for (i = 0; i < r.depth; i++) {
		pool[i].next = r.avail;
		r.avail = &pool[i];
	}
	/* A precise timer: the idle gap is GAP_US, not a rounded-up ms. */
	if ((cfg = event_config_new()) == NULL)
		bench_die("event_config_new failed");
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	r.base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (r.base == NULL)
		bench_die("event_base_new failed");
	if ((r.gap_ev = evtimer_new(r.base, gap_done, &r)) == NULL)
		bench_die("evtimer_new failed");
	if ((rc = cq_init(&r.cq, r.base, drain, &r)) != 0)
		bench_die("cq_init: %s", strerror(-rc));
	cq_set_policy(&r.cq, policy);
	if ((rc = tg_create(&r.tg, &tp, &be)) != 0)
		bench_die("tg_create(%ux%u): %s", opt.groups, opt.tasks,
		    strerror(-rc));
	/* Let the new threads reach their first sleep before timing. */
	usleep(20000);

	bench_cpu_ticks(&ct0);
	getrusage(RUSAGE_SELF, &ru0);
	t0 = now_ns();
	r.deadline = t0 + (uint64_t)(seconds * 1e9);
	submit_more(&r);
	/* Completions arrive as event_active from other threads: the loop
	 * must wait for them with nothing pending. */
	if (event_base_loop(r.base, EVLOOP_NO_EXIT_ON_EMPTY) != 0)
		bench_die("event_base_loop failed");
	t1 = now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	bench_cpu_ticks(&ct1);
	tg_get_stats(r.tg, &st);
	cqw = cq_wakeups(&r.cq);
	/* Engine threads are done with the queue before it goes. */
	tg_destroy(r.tg);
	cq_fini(&r.cq);
	event_free(r.gap_ev);
	event_base_free(r.base);
	if (r.error != 0)
		bench_die("backend: %s", strerror(-r.error));
	if (r.done != r.seq || r.inflight != 0)
		bench_die("accounting: %llu submitted, %llu done",
		    (unsigned long long)r.seq, (unsigned long long)r.done);

	pt->ran = 1;
	pt->ns += t1 - t0;
	pt->ops += r.done;
	pt->task_wakeups += st.wakeups;
	pt->cq_wakeups += cqw;
	pt->vcs += (uint64_t)(ru1.ru_nvcsw - ru0.ru_nvcsw);
	own_us = bench_tv_us(&ru1.ru_utime) - bench_tv_us(&ru0.ru_utime) +
	    bench_tv_us(&ru1.ru_stime) - bench_tv_us(&ru0.ru_stime);
	pt->cpu_us += own_us;
	if (ct0.ok && ct1.ok)
		pt->other_us += MAX((double)(ct1.busy - ct0.busy) * 1e6 /
		    (double)sysconf(_SC_CLK_TCK) - own_us, 0);
}

/* The figures of a point from its sums. */
static void
point_figures(struct point *pt)
{
	double ops = (double)pt->ops;

	if (pt->ops == 0 || pt->nlat == 0)
		bench_die("a point completed no op");
	pt->ops_s = ops / ((double)pt->ns / 1e9);
	pt->task_per_op = (double)pt->task_wakeups / ops;
	pt->cq_per_op = (double)pt->cq_wakeups / ops;
	pt->wake_per_op = pt->task_per_op + pt->cq_per_op;
	pt->vcs_per_op = (double)pt->vcs / ops;
	pt->cpu_us_per_op = pt->cpu_us / ops;
	qsort(pt->lat, pt->nlat, sizeof(*pt->lat), cmp_u32);
	pt->p50_us = (double)pt->lat[pt->nlat / 2] / 1e3;
	pt->p99_us = (double)pt->lat[(pt->nlat * 99) / 100] / 1e3;
	pt->others = pt->other_us / ((double)pt->ns / 1e3);
}

/* ---- driver ----------------------------------------------------------- */

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: dispatch [--seconds S] [--quick] [--work-ns N] [--qd N]\n"
	    "                [--shape GxT] [--policy always|adaptive|all]\n"
	    "                [--load idle|qd1|sat|all]\n"
	    "  --seconds S  run each point for S seconds (default 1)\n"
	    "  --quick      halve the run length\n"
	    "  --work-ns N  apply() takes N ns: a 4 KiB copy, then a spin (2000)\n"
	    "  --qd N       ops in flight at saturation (64, at most %u)\n"
	    "  --shape GxT  task groups x tasks per group (2x2)\n"
	    "  --policy P   always, adaptive or all (all)\n"
	    "  --load L     idle, qd1, sat or all (all)\n", MAX_QD);
}

static void
fmt_ratio(char *buf, size_t len, double v)
{
	snprintf(buf, len, v < 0.1 ? "%.3f" : "%.2f", v);
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "quick", no_argument, NULL, 'q' },
		{ "work-ns", required_argument, NULL, 'w' },
		{ "qd", required_argument, NULL, 'd' },
		{ "shape", required_argument, NULL, 'g' },
		{ "policy", required_argument, NULL, 'p' },
		{ "load", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct point pts[NLOADS][2];
	struct bop *pool;
	int quick = 0, c, li, pi, round;
	char *end, when[64];
	time_t now = time(NULL);
	struct utsname un;
	const struct point *ai, *aa, *sa;

	bench_name = "dispatch";

	while ((c = getopt_long(argc, argv, "s:qw:d:g:p:l:h", lopts,
	    NULL)) != -1) {
		switch (c) {
		case 's':
			opt.seconds = strtod(optarg, &end);
			if (end == optarg || *end != '\0' ||
			    !(opt.seconds > 0 && opt.seconds < 3600))
				bench_die("bad --seconds: %s", optarg);
			break;
		case 'q':
			quick = 1;
			break;
		case 'w':
			opt.work_ns = bench_parse_u64(optarg, "--work-ns");
			break;
		case 'd':
			opt.qd = (unsigned)bench_parse_u64(optarg, "--qd");
			if (opt.qd == 0 || opt.qd > MAX_QD)
				bench_die("bad --qd: %s", optarg);
			break;
		case 'g':
			if (sscanf(optarg, "%ux%u", &opt.groups,
			    &opt.tasks) != 2 || opt.groups == 0 ||
			    opt.tasks == 0 || opt.groups > 64 ||
			    opt.tasks > 64)
				bench_die("bad --shape: %s", optarg);
			break;
		case 'p':
			opt.policy_mask = bench_parse_sel(optarg, policy_name,
			    2);
			if (opt.policy_mask == 0)
				bench_die("bad --policy: %s", optarg);
			break;
		case 'l':
			if ((opt.load_mask = bench_parse_sel(optarg, load_name,
			    NLOADS)) == 0)
				bench_die("bad --load: %s", optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (quick)
		opt.seconds /= 2;
	if (evthread_use_pthreads() != 0)
		bench_die("evthread_use_pthreads failed");
	pool = calloc(MAX_QD, sizeof(*pool));
	vol = calloc(VOL_BLOCKS, OP_LEN);
	if (pool == NULL || vol == NULL)
		bench_die("out of memory");

	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", localtime(&now));
	if (uname(&un) != 0)
		memset(&un, 0, sizeof(un));
	printf("dispatch bench: %s, %s %s, %ld online CPUs\n", when,
	    un.sysname, un.release, sysconf(_SC_NPROCESSORS_ONLN));
	printf("engine %ux%u (groups x tasks), 4 KiB writes, no overlaps; "
	    "apply = 4 KiB copy + spin to %llu ns;\n", opt.groups, opt.tasks,
	    (unsigned long long)opt.work_ns);
	printf("completions through cq to a libevent thread; %.2f s per "
	    "point, in %d rounds taking turns\n", opt.seconds, ROUNDS);
	printf("idle: QD1 with %d us between ops; qd1: QD1 back to back; "
	    "sat: QD%u\n", GAP_US, opt.qd);
	printf("targets: sat adaptive wake/op <= 0.1; idle adaptive p50 <= "
	    "1.1 x always p50\n\n");
	printf("%-4s %-8s %9s %8s %8s %8s %7s %7s %8s %8s %6s\n", "load",
	    "policy", "ops/s", "wake/op", "task/op", "cq/op", "vcs/op",
	    "cpu_us", "p50_us", "p99_us", "others");
	fflush(stdout);

	for (li = 0; li < NLOADS; li++) {
		if (!(opt.load_mask & (1 << li)))
			continue;
		/* Always first in each round: the baseline, then the change. */
		for (round = 0; round < ROUNDS; round++)
			for (pi = 1; pi >= 0; pi--)
				if (opt.policy_mask & (1 << pi))
					run_round(&pts[li][pi],
					    (enum wake_policy)pi, (enum load)li,
					    pool, opt.seconds / ROUNDS);
		for (pi = 1; pi >= 0; pi--) {
			struct point *pt = &pts[li][pi];
			char w[16], t[16], q[16];

			if (!(opt.policy_mask & (1 << pi)))
				continue;
			point_figures(pt);
			fmt_ratio(w, sizeof(w), pt->wake_per_op);
			fmt_ratio(t, sizeof(t), pt->task_per_op);
			fmt_ratio(q, sizeof(q), pt->cq_per_op);
			printf("%-4s %-8s %9.0f %8s %8s %8s %7.2f %7.1f %8.1f "
			    "%8.1f %6.2f\n", load_name[li], policy_name[pi],
			    pt->ops_s, w, t, q, pt->vcs_per_op,
			    pt->cpu_us_per_op, pt->p50_us, pt->p99_us,
			    pt->others);
			fflush(stdout);
		}
	}

	printf("\n");
	sa = &pts[LOAD_SAT][WAKE_ADAPTIVE];
	if (sa->ran)
		printf("target: sat adaptive wake-ups/op %.3f <= 0.1: %s\n",
		    sa->wake_per_op, sa->wake_per_op <= 0.1 ? "met" : "MISSED");
	ai = &pts[LOAD_IDLE][WAKE_ADAPTIVE];
	aa = &pts[LOAD_IDLE][WAKE_ALWAYS];
	if (ai->ran && aa->ran)
		printf("target: idle adaptive p50 %.1f us <= 1.1 x always "
		    "p50 %.1f us: %s\n", ai->p50_us, aa->p50_us,
		    ai->p50_us <= 1.1 * aa->p50_us ? "met" : "MISSED");
	printf("(reported, not asserted)\n");
	for (li = 0; li < NLOADS; li++)
		for (pi = 0; pi < 2; pi++)
			free(pts[li][pi].lat);
	free(vol);
	free(pool);
	return 0;
}
