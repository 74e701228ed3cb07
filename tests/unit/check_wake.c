/*
 * check_wake.c: the wake-up policies (common/wake.c) and the completion
 * queue that uses them with an event loop (common/cq.c).
 *
 * Core pins the adaptive state machine step by step: signal when idle,
 * nothing while polling, poll once more, re-arm, sleep. Lost holds both
 * policies to "no wake-up is ever lost" the only way a test can: producers
 * with random pauses hand items to a consumer that sleeps whenever it finds
 * nothing, and every item must arrive within a generous bound; a lost
 * wake-up leaves one waiting for ever. The same for the completion queue
 * with a libevent loop as its consumer.
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

#include <event2/event.h>
#include <event2/thread.h>

#include "common/cq.h"
#include "common/util.h"
#include "common/wake.h"

static enum wake_policy
policy_of(int i)
{
	return i % 2 == 0 ? WAKE_ADAPTIVE : WAKE_ALWAYS;
}

static unsigned
threads_of(int i, unsigned most)
{
	return i < 2 ? 1 : most;
}

static const char *
policy_name(enum wake_policy p)
{
	return p == WAKE_ADAPTIVE ? "adaptive" : "always";
}

static void
spin_ns(uint64_t ns)
{
	uint64_t t0 = now_ns();

	while (now_ns() - t0 < ns)
		;
}

/* ---- Core ------------------------------------------------------------ */

START_TEST(adaptive_steps)
{
	struct waker w;

	waker_init(&w, WAKE_ADAPTIVE);
	/* Starts idle and armed: the first signal goes through. */
	ck_assert_int_eq(waker_armed(&w), 1);
	ck_assert_int_eq(waker_idle(&w), WAKE_SLEEP);
	waker_signal(&w);
	ck_assert_uint_eq(waker_signals(&w), 1);
	ck_assert_int_eq(waker_armed(&w), 0);	/* the signal disarmed it */
	/* The owner, about to sleep, finds the signal taken: looks again. */
	ck_assert_int_eq(waker_wait(&w), WAKE_ARMED);
	/* Busy: producers do nothing. */
	waker_busy(&w);
	waker_signal(&w);
	waker_signal(&w);
	ck_assert_uint_eq(waker_signals(&w), 1);
	/* Drained: poll once, then re-arm, then sleep. */
	ck_assert_int_eq(waker_idle(&w), WAKE_POLL);
	ck_assert_int_eq(waker_armed(&w), 0);
	ck_assert_int_eq(waker_idle(&w), WAKE_ARMED);
	ck_assert_int_eq(waker_armed(&w), 1);
	ck_assert_int_eq(waker_idle(&w), WAKE_SLEEP);
	/* Work found by the poll starts the count again. */
	waker_busy(&w);
	ck_assert_int_eq(waker_armed(&w), 0);
	ck_assert_int_eq(waker_idle(&w), WAKE_POLL);
	ck_assert_int_eq(waker_busy(&w), 0);	/* was not armed */
	ck_assert_int_eq(waker_idle(&w), WAKE_POLL);
	ck_assert_int_eq(waker_idle(&w), WAKE_ARMED);
	ck_assert_int_eq(waker_busy(&w), 1);	/* it disarmed it */
	/* Only signals to a sleeper count as wake-ups. */
	ck_assert_uint_eq(waker_wakeups(&w), 0);
	waker_destroy(&w);
}
END_TEST

START_TEST(always_signals_every_time)
{
	struct waker w;

	waker_init(&w, WAKE_ALWAYS);
	waker_busy(&w);
	ck_assert_int_eq(waker_idle(&w), WAKE_SLEEP);
	waker_signal(&w);
	waker_signal(&w);
	ck_assert_uint_eq(waker_signals(&w), 2);
	ck_assert_int_eq(waker_armed(&w), 1);
	ck_assert_int_eq(waker_wait(&w), WAKE_SLEEP);	/* pending: at once */
	waker_destroy(&w);
}
END_TEST

static void
count_kick(void *arg)
{
	(*(int *)arg)++;
}

START_TEST(kick_waker_kicks_once_per_idle)
{
	struct waker w;
	int kicks = 0;

	waker_init_kick(&w, WAKE_ADAPTIVE, count_kick, &kicks);
	waker_signal(&w);
	waker_signal(&w);
	ck_assert_int_eq(kicks, 1);
	ck_assert_uint_eq(waker_wakeups(&w), 1);
	waker_busy(&w);
	ck_assert_int_eq(waker_idle(&w), WAKE_POLL);
	ck_assert_int_eq(waker_idle(&w), WAKE_ARMED);
	waker_signal(&w);
	ck_assert_int_eq(kicks, 2);
	waker_destroy(&w);
}
END_TEST

/* ---- Lost: a waker with a sleeping consumer thread --------------------- */

/*
 * Each producer hands over one item at a time and waits until the consumer
 * took it, with random pauses, so the consumer keeps going idle, polling,
 * re-arming and sleeping while items arrive at every step of that. A lost
 * wake-up leaves an item in the queue with the consumer asleep; with one
 * producer nobody else's signal comes to rescue it, and the producer's wait
 * runs out. With three, signals race each other for the armed waker.
 * Loop index i: policy i % 2, one producer for i < 2, else three.
 */
#define LQ_PRODUCERS	3	/* at most */
#define LQ_ITEMS	5000	/* per producer */
#define LQ_SECONDS	10	/* for all of them */

struct lq {
	pthread_mutex_t	 lock;
	unsigned	 queue[LQ_PRODUCERS];	/* lock: producer ids */
	unsigned	 nqueued;
	unsigned	 acked[LQ_PRODUCERS];	/* atomic */
	unsigned	 stuck;			/* atomic */
	uint64_t	 deadline;		/* now_ns() */
	int		 stop;			/* atomic */
	struct waker	 w;
};

static struct lq LQ;

static void *
lq_consumer(void *arg)
{
	unsigned got[LQ_PRODUCERS], n, i, seed = 42;

	(void)arg;
	while (!__atomic_load_n(&LQ.stop, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&LQ.lock);
		n = LQ.nqueued;
		memcpy(got, LQ.queue, n * sizeof(got[0]));
		LQ.nqueued = 0;
		pthread_mutex_unlock(&LQ.lock);
		if (n == 0) {
			/* Code between the look and the wait, as in tg.c. */
			if (rand_r(&seed) % 2 == 0)
				spin_ns(rand_r(&seed) % 5000);
			waker_wait(&LQ.w);
			continue;
		}
		waker_busy(&LQ.w);
		for (i = 0; i < n; i++)
			__atomic_add_fetch(&LQ.acked[got[i]], 1,
			    __ATOMIC_RELEASE);
	}
	return NULL;
}

/*
 * Pauses from none to 0.2 ms, so that items arrive while the consumer is
 * busy, polling, re-arming or asleep; the short spins spread arrivals over
 * the few microseconds between "found nothing" and "asleep", where a lost
 * wake-up would hide.
 */
static void
random_pause(unsigned *rng)
{
	*rng = *rng * 1103515245u + 12345u;
	switch ((*rng >> 16) % 8) {
	case 0:
		break;
	case 1:
		sched_yield();
		break;
	case 2:
	case 3:
	case 4:
		spin_ns((*rng >> 4) % 20000);
		break;
	default:
		usleep((*rng >> 8) % 200);
		break;
	}
}

/* Waits for *v >= want until deadline; 0 if it never came. */
static int
wait_acked(unsigned *v, unsigned want, uint64_t deadline)
{
	while (__atomic_load_n(v, __ATOMIC_ACQUIRE) < want) {
		if (now_ns() > deadline)
			return 0;
		sched_yield();
	}
	return 1;
}

static void *
lq_producer(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg, i;
	unsigned rng = me * 2654435761u + 1;

	for (i = 0; i < LQ_ITEMS; i++) {
		random_pause(&rng);
		pthread_mutex_lock(&LQ.lock);
		LQ.queue[LQ.nqueued++] = me;
		pthread_mutex_unlock(&LQ.lock);
		waker_signal(&LQ.w);
		if (!wait_acked(&LQ.acked[me], i + 1, LQ.deadline)) {
			__atomic_add_fetch(&LQ.stuck, 1, __ATOMIC_RELAXED);
			break;
		}
	}
	return NULL;
}

START_TEST(waker_loses_no_wakeup)
{
	enum wake_policy policy = policy_of(_i);
	unsigned nprod = threads_of(_i, LQ_PRODUCERS), i, total = 0;
	pthread_t prod[LQ_PRODUCERS], cons;

	memset(&LQ, 0, sizeof(LQ));
	pthread_mutex_init(&LQ.lock, NULL);
	waker_init(&LQ.w, policy);
	LQ.deadline = now_ns() + LQ_SECONDS * 1000000000ull;
	ck_assert_int_eq(pthread_create(&cons, NULL, lq_consumer, NULL), 0);
	for (i = 0; i < nprod; i++)
		ck_assert_int_eq(pthread_create(&prod[i], NULL, lq_producer,
		    (void *)(uintptr_t)i), 0);
	for (i = 0; i < nprod; i++)
		pthread_join(prod[i], NULL);
	for (i = 0; i < nprod; i++)
		total += LQ.acked[i];
	ck_assert_msg(LQ.stuck == 0, "%s: %u producers waited %d s for the "
	    "consumer (%u of %u items taken): a lost wake-up",
	    policy_name(policy), LQ.stuck, LQ_SECONDS, total,
	    nprod * LQ_ITEMS);
	__atomic_store_n(&LQ.stop, 1, __ATOMIC_RELEASE);
	waker_signal(&LQ.w);
	/* A polling consumer skipped that signal but sees stop itself. */
	pthread_join(cons, NULL);
	waker_destroy(&LQ.w);
}
END_TEST

/* ---- Lost: the completion queue and an event loop -------------------- */

/*
 * The same, with cq_push and a libevent loop draining with cq_take. A
 * periodic tick keeps the loop turning but does not drain: only a kick or
 * the queue's own scheduled look runs cq_take.
 */
#define CQ_WORKERS	3	/* at most */
#define CQ_ITEMS	5000	/* per worker */

struct cqt_node {
	struct cq_node	 n;
	unsigned	 worker;
};

struct cqt {
	struct event_base *base;
	struct cq	   q;
	struct cqt_node	   nodes[CQ_WORKERS];
	unsigned	   acked[CQ_WORKERS];	/* atomic */
	unsigned	   stuck;		/* atomic */
	unsigned	   nworkers;
	unsigned	   finished;		/* atomic: workers done */
	uint64_t	   deadline;
};

static struct cqt CQT;

static void
cqt_drain(evutil_socket_t fd, short what, void *arg)
{
	struct cq_node *n, *next;

	(void)fd; (void)what; (void)arg;
	for (n = cq_take(&CQT.q); n != NULL; n = next) {
		struct cqt_node *c = CONTAINER_OF(n, struct cqt_node, n);

		next = n->cq_next;	/* before the ack: the node goes back */
		__atomic_add_fetch(&CQT.acked[c->worker], 1, __ATOMIC_RELEASE);
	}
}

/* Ends the loop once every worker is done (or gave up). */
static void
cqt_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
	if (__atomic_load_n(&CQT.finished, __ATOMIC_ACQUIRE) == CQT.nworkers)
		event_base_loopbreak(CQT.base);
}

static void *
cqt_worker(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg, i;
	unsigned rng = me * 2654435761u + 7;

	for (i = 0; i < CQ_ITEMS; i++) {
		random_pause(&rng);
		CQT.nodes[me].worker = me;
		cq_push(&CQT.q, &CQT.nodes[me].n);
		if (!wait_acked(&CQT.acked[me], i + 1, CQT.deadline)) {
			__atomic_add_fetch(&CQT.stuck, 1, __ATOMIC_RELAXED);
			break;
		}
	}
	__atomic_add_fetch(&CQT.finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

START_TEST(cq_loses_no_wakeup)
{
	enum wake_policy policy = policy_of(_i);
	struct timeval every = { 0, 50000 };
	pthread_t th[CQ_WORKERS];
	struct event *tick;
	unsigned i, total = 0;

	ck_assert_int_eq(evthread_use_pthreads(), 0);
	memset(&CQT, 0, sizeof(CQT));
	CQT.base = event_base_new();
	ck_assert_ptr_nonnull(CQT.base);
	ck_assert_int_eq(cq_init(&CQT.q, CQT.base, cqt_drain, NULL), 0);
	cq_set_policy(&CQT.q, policy);
	tick = event_new(CQT.base, -1, EV_PERSIST, cqt_tick, NULL);
	ck_assert_ptr_nonnull(tick);
	evtimer_add(tick, &every);
	CQT.nworkers = threads_of(_i, CQ_WORKERS);
	CQT.deadline = now_ns() + 10 * 1000000000ull;
	for (i = 0; i < CQT.nworkers; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, cqt_worker,
		    (void *)(uintptr_t)i), 0);
	event_base_dispatch(CQT.base);
	for (i = 0; i < CQT.nworkers; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < CQT.nworkers; i++)
		total += CQT.acked[i];
	ck_assert_msg(CQT.stuck == 0, "%s: %u workers waited 10 s for the "
	    "event loop (%u of %u drained): a lost wake-up",
	    policy_name(policy), CQT.stuck, total, CQT.nworkers * CQ_ITEMS);
	ck_assert_uint_eq(total, CQT.nworkers * CQ_ITEMS);
	ck_assert_uint_eq(cq_pushed(&CQT.q), CQT.nworkers * CQ_ITEMS);
	event_free(tick);
	cq_fini(&CQT.q);
	event_base_free(CQT.base);
}
END_TEST

static Suite *
wake_suite(void)
{
	Suite *s = suite_create("wake");
	TCase *tc;

	tc = tcase_create("Core");
	tcase_add_test(tc, adaptive_steps);
	tcase_add_test(tc, always_signals_every_time);
	tcase_add_test(tc, kick_waker_kicks_once_per_idle);
	suite_add_tcase(s, tc);

	tc = tcase_create("Lost");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, waker_loses_no_wakeup, 0, 4);
	tcase_add_loop_test(tc, cq_loses_no_wakeup, 0, 4);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(wake_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
