/*
 * wake.h: how a consumer that ran out of work is woken when work arrives.
 * Every wake-up in the engine (task groups' main and mini queues, the
 * flusher) and on the completion path back to the event thread (cq.c: the
 * mirror's acks, the primary's replies and sends) goes through this one
 * interface, so the policy of DESIGN.md "Adaptive wake-ups" lives in one
 * place and can be measured.
 *
 * A waker belongs to one consumer (its owner). Producers publish work where
 * the owner looks for it (a queue, under the queue's own lock or not), then
 * call waker_signal. Two policies, chosen per waker at init:
 *
 *   WAKE_ALWAYS    every signal goes through: the plain interrupt path.
 *   WAKE_ADAPTIVE  the signal is enabled ("armed") only while the owner is
 *                  idle. Signalling an armed waker disarms it, so of a burst
 *                  only the first producer pays for a wake-up; a producer
 *                  that finds it disarmed does nothing but one fence and one
 *                  load. The woken owner drains with the signal disabled,
 *                  and when a look finds nothing it takes one more look (the
 *                  poll) instead of sleeping. If that look finds work it
 *                  drains again; only when it finds nothing does the owner
 *                  re-arm, and then it must look once more before it sleeps
 *                  (work published before the re-arm was visible was not
 *                  signalled). The owner's loop, in both policies:
 *
 *		for (;;) {
 *			if ((x = take()) != NULL) {
 *				waker_busy(w);
 *				run(x);
 *			} else
 *				waker_wait(w);	(or waker_idle, see below)
 *		}
 *
 * The poll is a plain look, not a pause: a thread owner looks again at
 * once; the event loop (cq.c) looks again after one pass of its loop.
 * Pausing was tried and measured on a shared 2-vCPU machine (bench/
 * README.md, "dispatch"): a yield can lose the CPU for milliseconds when
 * the machine is busy, and a spin takes the CPU from the very thread that
 * would bring the work; both cost far more tail latency and throughput
 * than the wake-ups they saved.
 *
 * Why no wake-up is lost: a producer does  publish; fence; load armed.  The
 * owner, re-arming, does  store armed; fence; look.  With both fences
 * sequentially consistent, at least one side sees the other's store: the
 * producer signals, or the owner's last look finds the work. A signal sets
 * w_pending under w_lock, and the owner tests w_pending under w_lock before
 * it sleeps on the condition variable, so a signal between "the last look
 * found nothing" and "asleep" is remembered, not lost.
 *
 * An owner that is not a thread sleeping in waker_wait (cq.c's event loop)
 * gives a kick function instead of the condition variable, and drives the
 * policy itself with waker_idle: it takes the poll for WAKE_POLL, looks
 * once more for WAKE_ARMED, and simply returns (the event loop sleeps) for
 * WAKE_SLEEP; the kick must make it look again.
 */
#ifndef DUET_WAKE_H
#define DUET_WAKE_H

#include <pthread.h>
#include <stdint.h>

enum wake_policy {
	WAKE_ADAPTIVE = 0,	/* the default: zeroed params get it */
	WAKE_ALWAYS,
};

/* What an owner whose last look found nothing does next (waker_idle). */
enum wake_step {
	WAKE_POLL,	/* look once more; the signal stays disabled */
	WAKE_ARMED,	/* the signal is enabled now: look once more at once */
	WAKE_SLEEP,	/* sleep until signalled */
};

struct waker {
	enum wake_policy w_policy;
	int		 w_armed;	/* atomic: producers must signal */
	unsigned	 w_looks;	/* owner: empty looks since work */
	uint64_t	 w_signals;	/* atomic: signals that went through */
	uint64_t	 w_wakeups;	/* atomic: of those, ones that woke
					 * (or, for a kick, would wake) the
					 * owner */
	void		(*w_kick)(void *);	/* NULL: the condition variable */
	void		*w_kick_arg;
	pthread_mutex_t	 w_lock;
	pthread_cond_t	 w_cond;
	int		 w_pending;	/* a signal not yet consumed (w_lock) */
	int		 w_sleeping;	/* owner is in pthread_cond_wait */
};

void waker_init(struct waker *w, enum wake_policy policy);
/* An owner woken by kick(arg) (called from the signalling thread). */
void waker_init_kick(struct waker *w, enum wake_policy policy,
    void (*kick)(void *), void *arg);
void waker_destroy(struct waker *w);

/* Any thread, after publishing work. */
void waker_signal(struct waker *w);

/*
 * Owner: a look found work. Disables the signal if it was enabled; returns
 * 1 if this call disabled it (so no signal is on its way), 0 otherwise.
 */
int waker_busy(struct waker *w);
/* Owner: a look found nothing. Says what to do next (see above). */
enum wake_step waker_idle(struct waker *w);
/*
 * Owner thread: a look found nothing. Returns at once for the poll or after
 * re-arming, or sleeps until signalled, as waker_idle says, and returns the
 * step it took; the caller looks again in every case. The poll's look may
 * be a cheap, lock-free peek: only the look after WAKE_ARMED must be one
 * that sees everything published before the re-arm (wake.h, above). After
 * WAKE_SLEEP the owner was woken by a signal (or found one pending).
 */
enum wake_step waker_wait(struct waker *w);
/* Owner: whether the signal is enabled (always 1 for WAKE_ALWAYS). */
int waker_armed(struct waker *w);

uint64_t waker_wakeups(struct waker *w);
uint64_t waker_signals(struct waker *w);

#endif
