/*
 * engine.c: throughput of the range task-group engine (common/tg.c).
 *
 * One dispatcher submits 4 KiB writes through tg_submit with a window of
 * WINDOW operations in flight: when the window is full it sleeps on a
 * condition variable, and each op's done() recycles the op and signals it.
 * Sequence numbers are strictly increasing from 1; frontiers are 0 (no
 * dependencies, so the frontier gate never holds anything) unless --lag L
 * asks for frontier = seq - L.
 *
 * Backends:
 *   sleep  apply() sleeps SLEEP_NS with nanosleep; flush is a no-op and no
 *          FLUSH ops are submitted. Tasks need no CPU while they sleep, so
 *          this isolates the engine's parallelism from the machine's cores.
 *   file   a FILE_SIZE sparse file in /var/tmp (unlinked as soon as it is
 *          open, so nothing is left behind even if the bench dies); apply()
 *          is pwrite, flush is fdatasync, and every FLUSH_EVERY data ops the
 *          dispatcher submits a TG_FLUSH.
 * Mixes:
 *   free   data op i writes at (i % 4096) * 64 KiB: two ops share a span
 *          only 4096 ops apart, far outside the 256-op window, so no two
 *          ops in flight overlap; the window covers 16 consecutive 1 MiB
 *          ranges, so every group gets work.
 *   hot    each op writes one of HOT_SLOTS 4 KiB slots drawn at random; slot
 *          k sits at k MiB, one slot per range, so the hot spots spread over
 *          the groups as DESIGN.md intends. With 256 in flight each op
 *          overlaps ~15 others.
 *
 * Each point (backend, mix, groups x tasks) runs for --seconds (or --ops
 * data ops) and then drains; ops/s = data ops / (first submit .. drained).
 * Speedup is over 1x1 of the same backend and mix. For the sleep backend
 * the table also gives ideal = N, eff = speedup / N, and "model": the
 * speedup of an idealised scheduler (constant service time, each round every
 * group runs up to `tasks` of the oldest ops in the window that have no
 * older overlapping op pending) on the same op stream; for the free mix it
 * is N, for the hot mix it is what the conflicts and the window allow (it
 * ignores --lag).
 *
 * Targets are reported, never asserted: the exit status is non-zero only for
 * a real error (bad arguments, the file, tg_create/tg_submit, a backend
 * error).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench/util/benchutil.h"
#include "common/tg.h"
#include "common/util.h"

#define WINDOW		256
#define RANGE_SIZE	(1ull << 20)
#define OP_LEN		4096u
#define FREE_STRIDE	(64ull << 10)
#define FREE_SLOTS	4096u
#define HOT_SLOTS	16u
#define FILE_SIZE	(256ull << 20)
#define FLUSH_EVERY	256u
#define SLEEP_NS	200000L
#define MODEL_OPS	60000u
#define RNG_SEED	0x9e3779b97f4a7c15ull

enum be_kind { BE_SLEEP, BE_FILE };
enum mix_kind { MIX_FREE, MIX_HOT };

static const char *const be_name[] = { "sleep", "file" };
static const char *const mix_name[] = { "free", "hot" };

struct be_ctx {
	enum be_kind	kind;
	int		fd;
	uint64_t	apply_ns;	/* atomic: time spent inside apply */
	uint64_t	applies;	/* atomic */
	uint64_t	flush_ns;	/* flusher thread only */
	uint64_t	flushes;
};

struct run;

struct bop {
	struct tg_op	 op;
	struct bop	*next;
	struct run	*run;
	unsigned char	 buf[OP_LEN] __attribute__((aligned(4096)));
};

/*
 * The window. done() pushes the op on `freed` (a lock-free stack: many
 * pushers, one taker that takes the whole stack at once, so no ABA) and
 * takes the mutex only to signal a dispatcher that sleeps on the condition
 * variable; the harness's own locking stays off the engine's threads' path
 * as much as it can.
 */
struct run {
	pthread_mutex_t	 lock;
	pthread_cond_t	 cond;
	struct bop	*freed;		/* atomic: recycled by done() */
	struct bop	*avail;		/* dispatcher's private free list */
	int		 waiting;	/* atomic: dispatcher sleeps on cond */
	int		 error;		/* atomic: first non-zero status */
	uint64_t	 data_done;	/* atomic */
	uint64_t	 flush_done;	/* atomic */
	uint64_t	 flush_sub;	/* dispatcher only */
};

struct point {
	int		ran;
	enum be_kind	be;
	enum mix_kind	mix;
	unsigned	groups, tasks;
	double		secs;
	uint64_t	data_ops;
	double		ops_s;
	double		apply_us;	/* mean time inside apply */
	double		busy;		/* apply time / (elapsed * N) */
	double		mini_per_op;
	double		wake_per_op;
	double		flush_ms;	/* mean fdatasync */
	uint64_t	flushes;
	double		flush_busy;	/* fdatasync time / elapsed */
	double		cpu_us_per_op;	/* process user+sys */
	double		vcs_per_op;	/* voluntary context switches */
	double		ivcs_per_op;	/* involuntary context switches */
	double		table;		/* mean conflict-table entries */
	double		mainq;		/* mean main-queue pieces */
	double		fpend;		/* mean FLUSH ops not yet done */
	double		others;		/* CPUs busy with other processes */
	double		steal;		/* fraction of CPU time stolen */
};

static struct {
	double		seconds;
	uint64_t	ops;		/* 0: run for seconds */
	uint64_t	lag;		/* 0: frontier 0 */
	int		be_mask;	/* bit per be_kind */
	int		mix_mask;	/* bit per mix_kind */
	const char	*dir;
	unsigned	cfg_mask;	/* bit per configs[] entry */
} opt = { 1.5, 0, 0, 3, 3, "/var/tmp", ~0u };

static uint64_t
rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Offset of data op number i (0-based) of mix; draws from *rng for hot. */
static uint64_t
mix_offset(enum mix_kind mix, uint64_t i, uint64_t *rng)
{
	if (mix == MIX_FREE)
		return (i % FREE_SLOTS) * FREE_STRIDE;
	return (rng_next(rng) % HOT_SLOTS) * RANGE_SIZE;
}

/* ---- backends --------------------------------------------------------- */

static int
sleep_apply(void *ctx, struct tg_op *op, uint64_t off, uint64_t len,
    void *buf)
{
	struct be_ctx *c = ctx;
	struct timespec ts = { 0, SLEEP_NS };
	uint64_t t0 = now_ns();

	(void)op; (void)off; (void)len; (void)buf;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
	__atomic_add_fetch(&c->apply_ns, now_ns() - t0, __ATOMIC_RELAXED);
	__atomic_add_fetch(&c->applies, 1, __ATOMIC_RELAXED);
	return 0;
}

static int
file_apply(void *ctx, struct tg_op *op, uint64_t off, uint64_t len,
    void *buf)
{
	struct be_ctx *c = ctx;
	uint64_t t0 = now_ns(), done = 0;
	int rc = 0;

	if (op->type != TG_WRITE)
		return -EOPNOTSUPP;
	while (done < len) {
		ssize_t n = pwrite(c->fd, (char *)buf + done, len - done,
		    (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0) {
			rc = -EIO;
			break;
		}
		done += (uint64_t)n;
	}
	__atomic_add_fetch(&c->apply_ns, now_ns() - t0, __ATOMIC_RELAXED);
	__atomic_add_fetch(&c->applies, 1, __ATOMIC_RELAXED);
	return rc;
}

static int
noop_flush(void *ctx)
{
	(void)ctx;
	return 0;
}

static int
file_flush(void *ctx)
{
	struct be_ctx *c = ctx;
	uint64_t t0 = now_ns();
	int rc = fdatasync(c->fd) == 0 ? 0 : -errno;

	c->flush_ns += now_ns() - t0;
	c->flushes++;
	return rc;
}

/* ---- one point ---------------------------------------------------------- */

static void
op_done(struct tg_op *op, int status)
{
	struct bop *b = op->arg;
	struct run *r = b->run;

	if (status != 0) {
		int expected = 0;
		__atomic_compare_exchange_n(&r->error, &expected, status, 0,
		    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
	}
	__atomic_add_fetch(op->type == TG_FLUSH ? &r->flush_done :
	    &r->data_done, 1, __ATOMIC_RELAXED);
	b->next = __atomic_load_n(&r->freed, __ATOMIC_RELAXED);
	while (!__atomic_compare_exchange_n(&r->freed, &b->next, b, 1,
	    __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
		;
	/* Seq-cst push, then this load: the dispatcher's store of waiting
	 * and its re-check of freed cannot both miss us. */
	if (__atomic_load_n(&r->waiting, __ATOMIC_SEQ_CST)) {
		pthread_mutex_lock(&r->lock);
		pthread_cond_signal(&r->cond);
		pthread_mutex_unlock(&r->lock);
	}
}

/* Takes every op done() recycled, sleeping until there is one. */
static struct bop *
take_freed(struct run *r)
{
	struct bop *list;

	if ((list = __atomic_exchange_n(&r->freed, NULL,
	    __ATOMIC_SEQ_CST)) != NULL)
		return list;
	pthread_mutex_lock(&r->lock);
	__atomic_store_n(&r->waiting, 1, __ATOMIC_SEQ_CST);
	while ((list = __atomic_exchange_n(&r->freed, NULL,
	    __ATOMIC_SEQ_CST)) == NULL)
		pthread_cond_wait(&r->cond, &r->lock);
	__atomic_store_n(&r->waiting, 0, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&r->lock);
	return list;
}

static void
run_point(struct point *pt, int fd, struct bop *pool)
{
	struct be_ctx bc = { .kind = pt->be, .fd = fd };
	struct tg_backend be = {
		.apply = pt->be == BE_SLEEP ? sleep_apply : file_apply,
		.flush = pt->be == BE_SLEEP ? noop_flush : file_flush,
		.ctx = &bc,
	};
	struct tg_params tp = {
		.groups = pt->groups, .tasks = pt->tasks,
		.range_size = RANGE_SIZE,
	};
	struct run r;
	struct tg *tg;
	struct tg_stats st;
	struct bop *b;
	uint64_t rng = RNG_SEED, seq = 0, ndata = 0, since_flush = 0;
	uint64_t t0, deadline, t1, samples = 0, table = 0, mainq = 0;
	uint64_t fpend = 0;
	double own_us;
	struct rusage ru0, ru1;
	struct bench_cpu ct0, ct1;
	unsigned i, g;
	int rc;

	memset(&r, 0, sizeof(r));
	pthread_mutex_init(&r.lock, NULL);
	pthread_cond_init(&r.cond, NULL);
	for (i = 0; i < WINDOW; i++) {
		pool[i].run = &r;
		pool[i].next = r.avail;
		r.avail = &pool[i];
	}
	if ((rc = tg_create(&tg, &tp, &be)) != 0)
		bench_die("tg_create(%ux%u): %s", pt->groups, pt->tasks,
		    strerror(-rc));

	bench_cpu_ticks(&ct0);
	getrusage(RUSAGE_SELF, &ru0);
	t0 = now_ns();
	deadline = t0 + (uint64_t)(opt.seconds * 1e9);
	for (;;) {
		struct tg_op *op;

		if (opt.ops != 0 ? ndata >= opt.ops : now_ns() >= deadline)
			break;
		if (r.avail == NULL)
			r.avail = take_freed(&r);
		b = r.avail;
		r.avail = b->next;
		rc = __atomic_load_n(&r.error, __ATOMIC_SEQ_CST);
		if (rc != 0)
			bench_die("%s backend: %s", be_name[pt->be],
			    strerror(-rc));

		op = &b->op;
		memset(op, 0, sizeof(*op));
		op->seq = ++seq;
		op->frontier = opt.lag != 0 && seq > opt.lag ? seq - opt.lag : 0;
		op->done = op_done;
		op->arg = b;
		if (pt->be == BE_FILE && since_flush == FLUSH_EVERY) {
			op->type = TG_FLUSH;
			since_flush = 0;
			r.flush_sub++;
		} else {
			op->type = TG_WRITE;
			op->off = mix_offset(pt->mix, ndata, &rng);
			op->len = OP_LEN;
			op->buf = b->buf;
			b->buf[0] = (unsigned char)seq;
			ndata++;
			since_flush++;
		}
		if ((rc = tg_submit(tg, op)) != 0)
			bench_die("tg_submit(seq %llu): %s",
			    (unsigned long long)seq, strerror(-rc));
		if (seq % 256 == 0) {
			/* Queue depths, sampled (takes every engine lock). */
			tg_get_stats(tg, &st);
			for (g = 0; g < st.groups; g++) {
				table += st.table_depth[g];
				mainq += st.main_depth[g];
			}
			fpend += r.flush_sub - __atomic_load_n(&r.flush_done,
			    __ATOMIC_RELAXED);
			samples++;
		}
	}
	tg_drain(tg);
	t1 = now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	bench_cpu_ticks(&ct1);
	tg_get_stats(tg, &st);
	tg_destroy(tg);
	if (r.error != 0)
		bench_die("%s backend: %s", be_name[pt->be],
		    strerror(-r.error));
	for (i = 0, b = r.avail; b != NULL; b = b->next)
		i++;
	for (b = r.freed; b != NULL; b = b->next)
		i++;
	if (r.data_done != ndata || r.flush_done != r.flush_sub || i != WINDOW)
		bench_die("accounting: %llu data ops submitted, %llu done; "
		    "%u of %u ops back", (unsigned long long)ndata,
		    (unsigned long long)r.data_done, i, WINDOW);

	pt->secs = (double)(t1 - t0) / 1e9;
	pt->data_ops = ndata;
	pt->ops_s = (double)ndata / pt->secs;
	pt->apply_us = bc.applies != 0 ?
	    (double)bc.apply_ns / (double)bc.applies / 1e3 : 0;
	pt->busy = (double)bc.apply_ns /
	    ((double)(t1 - t0) * pt->groups * pt->tasks);
	pt->mini_per_op = ndata != 0 ? (double)st.mini_moves / (double)ndata : 0;
	pt->wake_per_op = ndata != 0 ? (double)st.wakeups / (double)ndata : 0;
	pt->flushes = bc.flushes;
	pt->flush_ms = bc.flushes != 0 ?
	    (double)bc.flush_ns / (double)bc.flushes / 1e6 : 0;
	pt->flush_busy = (double)bc.flush_ns / (double)(t1 - t0);
	own_us = bench_tv_us(&ru1.ru_utime) - bench_tv_us(&ru0.ru_utime) +
	    bench_tv_us(&ru1.ru_stime) - bench_tv_us(&ru0.ru_stime);
	pt->cpu_us_per_op = ndata == 0 ? 0 : own_us / (double)ndata;
	pt->others = pt->steal = -1;
	if (ct0.ok && ct1.ok && ct1.total > ct0.total) {
		double tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK);
		double other_us = (double)(ct1.busy - ct0.busy) * tick_us -
		    own_us;

		pt->others = MAX(other_us, 0) / ((double)(t1 - t0) / 1e3);
		pt->steal = (double)(ct1.steal - ct0.steal) /
		    (double)(ct1.total - ct0.total);
	}
	pt->vcs_per_op = ndata == 0 ? 0 :
	    (double)(ru1.ru_nvcsw - ru0.ru_nvcsw) / (double)ndata;
	pt->ivcs_per_op = ndata == 0 ? 0 :
	    (double)(ru1.ru_nivcsw - ru0.ru_nivcsw) / (double)ndata;
	pt->table = samples ? (double)table / (double)samples : 0;
	pt->mainq = samples ? (double)mainq / (double)samples : 0;
	pt->fpend = samples ? (double)fpend / (double)samples : 0;
	pthread_cond_destroy(&r.cond);
	pthread_mutex_destroy(&r.lock);
}

/*
 * The idealised scheduler's speedup on the same op stream: constant service
 * time, so time advances in rounds; each round every group runs up to
 * `tasks` of the oldest ops in the window whose span has no older op still
 * pending, then the window refills to WINDOW.
 */
static double
model_speedup(enum mix_kind mix, unsigned groups, unsigned tasks)
{
	struct { uint32_t key, group; } win[WINDOW];
	unsigned char seen[FREE_SLOTS], pick[WINDOW];
	unsigned used[64], n = 0, i, j;
	uint64_t rng = RNG_SEED, gen = 0, done = 0, rounds = 0;

	memset(seen, 0, sizeof(seen));
	while (done < MODEL_OPS) {
		while (n < WINDOW) {
			uint64_t off = mix_offset(mix, gen++, &rng);

			win[n].key = mix == MIX_FREE ?
			    (uint32_t)(off / FREE_STRIDE) :
			    (uint32_t)(off / RANGE_SIZE);
			win[n].group = (uint32_t)(off / RANGE_SIZE % groups);
			n++;
		}
		memset(used, 0, sizeof(used));
		for (i = 0; i < n; i++) {
			pick[i] = 0;
			if (seen[win[i].key])
				continue;
			seen[win[i].key] = 1;
			if (used[win[i].group] < tasks) {
				used[win[i].group]++;
				pick[i] = 1;
			}
		}
		for (i = j = 0; i < n; i++) {
			seen[win[i].key] = 0;
			if (pick[i])
				done++;
			else
				win[j++] = win[i];
		}
		n = j;
		rounds++;
	}
	return (double)done / (double)rounds;
}

/* ---- driver ----------------------------------------------------------- */

static const struct { unsigned groups, tasks; } configs[] = {
	{ 1, 1 }, { 1, 2 }, { 1, 4 }, { 4, 1 }, { 1, 8 }, { 4, 2 },
	{ 1, 16 }, { 4, 4 },
};

static int
open_file(void)
{
	char path[4096];
	static unsigned char blk[OP_LEN];
	uint64_t i;
	int fd;

	if (snprintf(path, sizeof(path), "%s/duet-bench-engine.XXXXXX",
	    opt.dir) >= (int)sizeof(path))
		bench_die("--dir too long");
	if ((fd = mkstemp(path)) < 0)
		bench_die("mkstemp %s: %s", path, strerror(errno));
	/* Gone from the namespace now; the data lives until close. */
	if (unlink(path) != 0)
		bench_die("unlink %s: %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)FILE_SIZE) != 0)
		bench_die("ftruncate %s: %s", path, strerror(errno));
	/*
	 * Allocate the blocks the mixes write, so that no point pays for
	 * block allocation the others do not (the file stays sparse: 16 MiB
	 * of 256 are allocated).
	 */
	memset(blk, 0xa5, sizeof(blk));
	for (i = 0; i < FREE_SLOTS; i++)
		if (pwrite(fd, blk, OP_LEN, (off_t)(i * FREE_STRIDE)) != OP_LEN)
			bench_die("pwrite %s: %s", path, strerror(errno));
	for (i = 0; i < HOT_SLOTS; i++)
		if (pwrite(fd, blk, OP_LEN, (off_t)(i * RANGE_SIZE)) != OP_LEN)
			bench_die("pwrite %s: %s", path, strerror(errno));
	if (fdatasync(fd) != 0)
		bench_die("fdatasync %s: %s", path, strerror(errno));
	return fd;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: engine [--seconds S] [--ops N] [--quick] [--lag L]\n"
	    "              [--backend sleep|file|all] [--mix free|hot|all]"
	    " [--dir DIR]\n"
	    "  --seconds S  run each point for S seconds (default 1.5)\n"
	    "  --ops N      run each point for N data ops instead\n"
	    "  --quick      halve the run length (seconds or ops)\n"
	    "  --lag L      frontier = seq - L instead of 0\n"
	    "  --dir DIR    where the file backend's file goes (/var/tmp)\n"
	    "  --configs L  only these groups x tasks, e.g. 1x1,4x4 (default:"
	    " all of\n"
	    "               1x1,1x2,1x4,4x1,1x8,4x2,1x16,4x4)\n");
}

static unsigned
parse_configs(const char *s)
{
	unsigned mask = 0, g, t, i;
	int used;

	while (*s != '\0') {
		if (sscanf(s, "%ux%u%n", &g, &t, &used) != 2)
			return 0;
		for (i = 0; i < ARRAY_SIZE(configs); i++)
			if (configs[i].groups == g && configs[i].tasks == t)
				break;
		if (i == ARRAY_SIZE(configs))
			return 0;
		mask |= 1u << i;
		s += used;
		if (*s == ',')
			s++;
		else if (*s != '\0')
			return 0;
	}
	return mask;
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "ops", required_argument, NULL, 'n' },
		{ "quick", no_argument, NULL, 'q' },
		{ "lag", required_argument, NULL, 'l' },
		{ "backend", required_argument, NULL, 'b' },
		{ "mix", required_argument, NULL, 'm' },
		{ "dir", required_argument, NULL, 'd' },
		{ "configs", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct point pts[2][2][ARRAY_SIZE(configs)];
	struct bop *pool;
	int quick = 0, c, fd = -1, missed = 0, checked = 0;
	unsigned bi, mi, ci;
	char *end;
	char when[64];
	time_t now = time(NULL);
	struct utsname un;

	bench_name = "engine";

	while ((c = getopt_long(argc, argv, "s:n:ql:b:m:d:c:h", lopts,
	    NULL)) != -1) {
		switch (c) {
		case 's':
			opt.seconds = strtod(optarg, &end);
			if (end == optarg || *end != '\0' ||
			    !(opt.seconds > 0 && opt.seconds < 3600))
				bench_die("bad --seconds: %s", optarg);
			break;
		case 'n':
			opt.ops = bench_parse_u64(optarg, "--ops");
			break;
		case 'q':
			quick = 1;
			break;
		case 'l':
			opt.lag = bench_parse_u64(optarg, "--lag");
			break;
		case 'b':
			opt.be_mask = bench_parse_sel(optarg, be_name, 2);
			if (opt.be_mask == 0)
				bench_die("bad --backend: %s", optarg);
			break;
		case 'm':
			opt.mix_mask = bench_parse_sel(optarg, mix_name, 2);
			if (opt.mix_mask == 0)
				bench_die("bad --mix: %s", optarg);
			break;
		case 'd':
			opt.dir = optarg;
			break;
		case 'c':
			if ((opt.cfg_mask = parse_configs(optarg)) == 0)
				bench_die("bad --configs: %s", optarg);
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
	if (quick) {
		opt.seconds /= 2;
		opt.ops = (opt.ops + 1) / 2;
	}
	if ((pool = aligned_alloc(4096, WINDOW * sizeof(*pool))) == NULL)
		bench_die("out of memory");
	memset(pool, 0, WINDOW * sizeof(*pool));

	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", localtime(&now));
	if (uname(&un) != 0)
		memset(&un, 0, sizeof(un));
	printf("engine bench: %s, %s %s, %ld online CPUs\n", when, un.sysname,
	    un.release, sysconf(_SC_NPROCESSORS_ONLN));
	printf("window %u ops, 4 KiB writes, range_size 1 MiB, seq 1,2,3,..., "
	    "frontier %s\n", WINDOW, opt.lag != 0 ? "seq - lag" : "0");
	if (opt.lag != 0)
		printf("lag %llu\n", (unsigned long long)opt.lag);
	if (opt.ops != 0)
		printf("each point: %llu data ops, then drain\n",
		    (unsigned long long)opt.ops);
	else
		printf("each point: %.2f s of submissions, then drain\n",
		    opt.seconds);
	printf("sleep: apply = nanosleep %ld us, no flushes; "
	    "file: pwrite to a %llu MiB sparse file in %s, TG_FLUSH "
	    "(fdatasync) every %u ops\n", SLEEP_NS / 1000,
	    (unsigned long long)(FILE_SIZE >> 20), opt.dir, FLUSH_EVERY);
	printf("free: op i at (i %% %u) * 64 KiB; hot: %u slots of 4 KiB at "
	    "k MiB, k random\n", FREE_SLOTS, HOT_SLOTS);
	printf("target: sleep/free speedup >= 0.9 x N for N <= 8\n\n");
	printf("%-5s %-4s %5s %3s %9s %7s %5s %5s %6s  %s\n",
	    "be", "mix", "gxt", "N", "ops/s", "speedup", "ideal", "eff",
	    "model", "target");
	fflush(stdout);

	for (bi = 0; bi < 2; bi++) {
		if (!(opt.be_mask & (1 << bi)))
			continue;
		if (bi == BE_FILE)
			fd = open_file();
		for (mi = 0; mi < 2; mi++) {
			if (!(opt.mix_mask & (1 << mi)))
				continue;
			for (ci = 0; ci < ARRAY_SIZE(configs); ci++) {
				struct point *pt = &pts[bi][mi][ci];
				unsigned n = configs[ci].groups *
				    configs[ci].tasks;
				double sp, base;
				char gxt[16], spd[16], ideal[16], eff[16];
				char model[16];
				const char *target = "-";

				if (!(opt.cfg_mask & (1u << ci)))
					continue;
				memset(pt, 0, sizeof(*pt));
				pt->be = (enum be_kind)bi;
				pt->mix = (enum mix_kind)mi;
				pt->groups = configs[ci].groups;
				pt->tasks = configs[ci].tasks;
				pt->ran = 1;
				run_point(pt, fd, pool);
				/* configs[0] is 1x1: the baseline, if run. */
				base = pts[bi][mi][0].ran ?
				    pts[bi][mi][0].ops_s : 0;
				sp = base > 0 ? pt->ops_s / base : 0;
				snprintf(gxt, sizeof(gxt), "%ux%u", pt->groups,
				    pt->tasks);
				strcpy(spd, "-");
				strcpy(ideal, "-");
				strcpy(eff, "-");
				strcpy(model, "-");
				if (sp > 0)
					snprintf(spd, sizeof(spd), "%.2f", sp);
				if (bi == BE_SLEEP && sp > 0) {
					snprintf(ideal, sizeof(ideal), "%u", n);
					snprintf(eff, sizeof(eff), "%.2f",
					    sp / n);
					snprintf(model, sizeof(model), "%.2f",
					    model_speedup(pt->mix, pt->groups,
					    pt->tasks));
				}
				if (bi == BE_SLEEP && mi == MIX_FREE &&
				    n <= 8 && sp > 0) {
					checked++;
					if (sp >= 0.9 * n) {
						target = "met";
					} else {
						target = "MISSED";
						missed++;
					}
				}
				printf("%-5s %-4s %5s %3u %9.0f %7s %5s %5s "
				    "%6s  %s\n", be_name[bi], mix_name[mi], gxt,
				    n, pt->ops_s, spd, ideal, eff, model, target);
				fflush(stdout);
			}
		}
		if (fd >= 0) {
			close(fd);
			fd = -1;
		}
	}
	if (checked > 0)
		printf("\ntarget (sleep/free speedup >= 0.9 x N, N <= 8): "
		    "%d of %d points met%s\n", checked - missed, checked,
		    missed ? " (reported, not asserted)" : "");

	printf("\ndiagnostics: busy = time tasks spent in apply / (elapsed x N);"
	    " apply_us = mean apply;\nmini, wake, vcs (voluntary) and ivcs "
	    "(involuntary context switches), cpu_us (user+sys) per data op;\n"
	    "table, mainq = conflict-table entries and main-queue pieces, "
	    "summed over groups, sampled every 256 submits;\nflush_ms = mean "
	    "fdatasync, flush%% = flusher busy / elapsed, fpend = FLUSH ops "
	    "in flight (sampled);\nothers = CPUs busy with other processes, "
	    "steal = CPU time the hypervisor took (both system-wide)\n\n");
	printf("%-5s %-4s %5s %5s %8s %6s %6s %6s %6s %6s %6s %6s %8s %6s "
	    "%6s %6s %5s\n", "be", "mix", "gxt", "busy", "apply_us", "mini",
	    "wake", "vcs", "ivcs", "cpu_us", "table", "mainq", "flush_ms",
	    "flush%", "fpend", "others", "steal");
	for (bi = 0; bi < 2; bi++)
		for (mi = 0; mi < 2; mi++)
			for (ci = 0; ci < ARRAY_SIZE(configs); ci++) {
				struct point *pt = &pts[bi][mi][ci];
				char gxt[16], fms[16], fb[16], fp[16];
				char oth[16], stl[16];

				if (!pt->ran)
					continue;
				snprintf(gxt, sizeof(gxt), "%ux%u", pt->groups,
				    pt->tasks);
				strcpy(fms, "-");
				strcpy(fb, "-");
				strcpy(fp, "-");
				strcpy(oth, "-");
				strcpy(stl, "-");
				if (pt->others >= 0) {
					snprintf(oth, sizeof(oth), "%.2f",
					    pt->others);
					snprintf(stl, sizeof(stl), "%.0f%%",
					    pt->steal * 100);
				}
				if (bi == BE_FILE) {
					snprintf(fms, sizeof(fms), "%.2f",
					    pt->flush_ms);
					snprintf(fb, sizeof(fb), "%.0f%%",
					    pt->flush_busy * 100);
					snprintf(fp, sizeof(fp), "%.1f",
					    pt->fpend);
				}
				printf("%-5s %-4s %5s %4.0f%% %8.1f %6.2f %6.2f "
				    "%6.2f %6.2f %6.1f %6.1f %6.1f %8s %6s %6s "
				    "%6s %5s\n",
				    be_name[bi], mix_name[mi], gxt,
				    pt->busy * 100, pt->apply_us,
				    pt->mini_per_op, pt->wake_per_op,
				    pt->vcs_per_op, pt->ivcs_per_op,
				    pt->cpu_us_per_op, pt->table, pt->mainq,
				    fms, fb, fp, oth, stl);
			}
	free(pool);
	return 0;
}
