/* wake.c: plain signalling; see wake.h. */
#include "common/wake.h"

void
waker_init(struct waker *w)
{
	pthread_mutex_init(&w->w_lock, NULL);
	pthread_cond_init(&w->w_cond, NULL);
	w->w_pending = 0;
	w->w_sleeping = 0;
	w->w_wakeups = 0;
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
	pthread_mutex_lock(&w->w_lock);
	w->w_pending = 1;
	if (w->w_sleeping) {
		w->w_wakeups++;
		pthread_cond_signal(&w->w_cond);
	}
	pthread_mutex_unlock(&w->w_lock);
}

void
waker_wait(struct waker *w)
{
	pthread_mutex_lock(&w->w_lock);
	w->w_sleeping = 1;
	while (!w->w_pending)
		pthread_cond_wait(&w->w_cond, &w->w_lock);
	w->w_sleeping = 0;
	w->w_pending = 0;
	pthread_mutex_unlock(&w->w_lock);
}

uint64_t
waker_wakeups(struct waker *w)
{
	uint64_t n;

	pthread_mutex_lock(&w->w_lock);
	n = w->w_wakeups;
	pthread_mutex_unlock(&w->w_lock);
	return n;
}
