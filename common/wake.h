/*
 * wake.h: how a sleeping worker is woken. Every wake-up in the engine goes
 * through this one interface so the policy (DESIGN.md "Adaptive wake-ups")
 * lives in one place and can be measured: today it is plain signalling,
 * an event flag under a mutex with a condition variable.
 *
 * A waker belongs to one sleeper (a task). Any thread may signal it. A signal
 * that arrives while the owner is awake is remembered, so the owner's next
 * wait returns at once: no wake-up is ever lost between "queue looked empty"
 * and "went to sleep".
 */
#ifndef DUET_WAKE_H
#define DUET_WAKE_H

#include <pthread.h>
#include <stdint.h>

struct waker {
	pthread_mutex_t	w_lock;
	pthread_cond_t	w_cond;
	int		w_pending;	/* a signal not yet consumed */
	int		w_sleeping;	/* owner is inside waker_wait */
	uint64_t	w_wakeups;	/* signals that woke a sleeper (w_lock) */
};

void waker_init(struct waker *w);
void waker_destroy(struct waker *w);
void waker_signal(struct waker *w);
/* Sleeps until signalled; consumes the signal. Owner only. */
void waker_wait(struct waker *w);
uint64_t waker_wakeups(struct waker *w);

#endif
