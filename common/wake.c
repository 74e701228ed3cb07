/*
 * wake.c: the wake-up policies; the protocol and why it loses no wake-up
 * are in wake.h.
 *
 * Who touches what: w_looks is the owner's alone. w_armed is set by the
 * owner (waker_idle) and cleared by whoever gets there first: a producer
 * whose compare-and-swap takes the signal, or the owner (waker_busy, or
 * after a sleep). w_pending and w_sleeping are under w_lock. The counters
 * are relaxed atomics: statistics, read while producers run.
 *
 * At saturation producers read w_armed on every signal, so the owner writes
 * the waker's cache line only when something changes.
 */
#include "common/wake.h"

static void
waker_init_common(struct waker *w, enum wake_policy policy,
    void (*kick)(void *), void *arg)
{
	pthread_mutex_init(&w->w_lock, NULL);
	pthread_cond_init(&w->w_cond, NULL);
	w->w_policy = policy;
	/*
	 * The owner starts idle, with the signal enabled: an owner that does
	 * not look before its first signal (an event loop) must get it.
	 * Always-signal is this state for good.
	 */
	w->w_armed = 1;
	w->w_looks = 2;
	w->w_signals = 0;
	w->w_wakeups = 0;
	w->w_kick = kick;
	w->w_kick_arg = arg;
	w->w_pending = 0;
	w->w_sleeping = 0;
}

void
waker_init(struct waker *w, enum wake_policy policy)
{
	waker_init_common(w, policy, NULL, NULL);
}

void
waker_init_kick(struct waker *w, enum wake_policy policy,
    void (*kick)(void *), void *arg)
{
	waker_init_common(w, policy, kick, arg);
}

void
waker_destroy(struct waker *w)
{
	pthread_cond_destroy(&w->w_cond);
	pthread_mutex_destroy(&w->w_lock);
}

void
waker_signal(struct waker *w)
{
	int armed = 1;

	if (w->w_policy == WAKE_ADAPTIVE) {
		/* The caller's publish, then the load of w_armed: see wake.h. */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (!__atomic_load_n(&w->w_armed, __ATOMIC_RELAXED))
			return;		/* the owner is busy or polling */
		/* Of several producers, one takes the signal. */
		if (!__atomic_compare_exchange_n(&w->w_armed, &armed, 0, 0,
		    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			return;
	}
	__atomic_add_fetch(&w->w_signals, 1, __ATOMIC_RELAXED);
	if (w->w_kick != NULL) {
		__atomic_add_fetch(&w->w_wakeups, 1, __ATOMIC_RELAXED);
		w->w_kick(w->w_kick_arg);
		return;
	}
	pthread_mutex_lock(&w->w_lock);
	w->w_pending = 1;
	if (w->w_sleeping) {
		__atomic_add_fetch(&w->w_wakeups, 1, __ATOMIC_RELAXED);
		pthread_cond_signal(&w->w_cond);
	}
	pthread_mutex_unlock(&w->w_lock);
}

int
waker_busy(struct waker *w)
{
	int armed = 1;

	if (w->w_policy == WAKE_ALWAYS || w->w_looks == 0)
		return 0;	/* busy already: the common case, no writes */
	w->w_looks = 0;
	if (!__atomic_load_n(&w->w_armed, __ATOMIC_RELAXED))
		return 0;
	/*
	 * Found work after re-arming. Disarm, so producers stop paying for
	 * signals; losing the race to one means its signal is on its way,
	 * which is harmless (a spurious wake-up later).
	 */
	return __atomic_compare_exchange_n(&w->w_armed, &armed, 0, 0,
	    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

enum wake_step
waker_idle(struct waker *w)
{
	if (w->w_policy == WAKE_ALWAYS)
		return WAKE_SLEEP;
	if (__atomic_load_n(&w->w_armed, __ATOMIC_RELAXED) && w->w_looks > 0)
		return WAKE_SLEEP;	/* the look after re-arming: empty */
	if (w->w_looks++ == 0)
		return WAKE_POLL;	/* drained: one more look */
	/*
	 * The poll found nothing either (or a producer took the signal we
	 * armed): re-enable the signal. The fence orders the store before
	 * the caller's next look (see wake.h).
	 */
	__atomic_store_n(&w->w_armed, 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return WAKE_ARMED;
}

enum wake_step
waker_wait(struct waker *w)
{
	enum wake_step step = waker_idle(w);

	if (step != WAKE_SLEEP)
		return step;
	pthread_mutex_lock(&w->w_lock);
	w->w_sleeping = 1;
	while (!w->w_pending)
		pthread_cond_wait(&w->w_cond, &w->w_lock);
	w->w_sleeping = 0;
	w->w_pending = 0;
	pthread_mutex_unlock(&w->w_lock);
	if (w->w_policy == WAKE_ADAPTIVE) {
		/*
		 * Woken: drain with the signal disabled. The producer that
		 * woke us disarmed it already, unless w_pending was a stale
		 * signal from an earlier round.
		 */
		__atomic_store_n(&w->w_armed, 0, __ATOMIC_RELAXED);
		w->w_looks = 0;
	}
	return WAKE_SLEEP;
}

int
waker_armed(struct waker *w)
{
	return __atomic_load_n(&w->w_armed, __ATOMIC_RELAXED);
}

uint64_t
waker_wakeups(struct waker *w)
{
	return __atomic_load_n(&w->w_wakeups, __ATOMIC_RELAXED);
}

uint64_t
waker_signals(struct waker *w)
{
	return __atomic_load_n(&w->w_signals, __ATOMIC_RELAXED);
}
