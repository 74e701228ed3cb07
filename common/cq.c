/*
 * cq.c: see cq.h.
 *
 * The waker's owner is the event thread and its sleep is the event loop,
 * so the policy's steps (wake.h) map onto the loop: a drain that took work
 * takes the poll step at once, and the poll's look is scheduled for after
 * one pass of the loop (a zero timeout: the loop first polls its sockets
 * without blocking, so pending I/O runs between two looks, and completions
 * that arrive meanwhile are taken without a signal). When that look finds
 * nothing, waker_idle says WAKE_ARMED: the signal is on, look a last time,
 * and return NULL so the loop may sleep until a push kicks it.
 *
 * cq_push publishes under cq_lock and then signals; cq_take re-arms and
 * then looks under cq_lock: the order wake.h needs so that no completion
 * waits for a signal nobody sends. A kick (event_active) needs the signal
 * armed and a scheduled look (event_add) is made only while it is off, so
 * the two rarely meet; when they do (a push took the signal just as the
 * event thread, having re-armed, found work), the drain runs once or twice
 * more and finds nothing, which is harmless.
 */
#include <errno.h>

#include "common/cq.h"

static void
cq_kick(void *arg)
{
	struct cq *q = arg;

	event_active(q->cq_ev, EV_READ, 0);
}

int
cq_init(struct cq *q, struct event_base *base,
    void (*drain)(evutil_socket_t, short, void *), void *arg)
{
	pthread_mutex_init(&q->cq_lock, NULL);
	q->cq_head = q->cq_tail = NULL;
	q->cq_pushed = 0;
	waker_init_kick(&q->cq_waker, WAKE_ADAPTIVE, cq_kick, q);
	q->cq_ev = event_new(base, -1, 0, drain, arg);
	return q->cq_ev == NULL ? -ENOMEM : 0;
}

void
cq_set_policy(struct cq *q, enum wake_policy policy)
{
	waker_destroy(&q->cq_waker);
	waker_init_kick(&q->cq_waker, policy, cq_kick, q);
}

void
cq_fini(struct cq *q)
{
	if (q->cq_ev != NULL)
		event_free(q->cq_ev);
	q->cq_ev = NULL;
	waker_destroy(&q->cq_waker);
	pthread_mutex_destroy(&q->cq_lock);
}

void
cq_push(struct cq *q, struct cq_node *n)
{
	int was_empty;

	n->cq_next = NULL;
	pthread_mutex_lock(&q->cq_lock);
	was_empty = q->cq_head == NULL;
	if (was_empty)
		q->cq_head = n;
	else
		q->cq_tail->cq_next = n;
	q->cq_tail = n;
	pthread_mutex_unlock(&q->cq_lock);
	__atomic_add_fetch(&q->cq_pushed, 1, __ATOMIC_RELAXED);
	/* Adaptive: the waker knows whether the event thread is idle. */
	if (was_empty || q->cq_waker.w_policy == WAKE_ADAPTIVE)
		waker_signal(&q->cq_waker);
}

static struct cq_node *
take_all(struct cq *q)
{
	struct cq_node *n;

	pthread_mutex_lock(&q->cq_lock);
	n = q->cq_head;
	q->cq_head = q->cq_tail = NULL;
	pthread_mutex_unlock(&q->cq_lock);
	return n;
}

struct cq_node *
cq_take(struct cq *q)
{
	static const struct timeval next_pass = { 0, 0 };
	struct waker *w = &q->cq_waker;
	struct cq_node *n;
	int armed_here = 0;

	if (w->w_policy == WAKE_ALWAYS)
		return take_all(q);
	for (;;) {
		if ((n = take_all(q)) != NULL) {
			/*
			 * Work: the signal goes (or stays) off, and the poll
			 * is scheduled, unless a push took the signal we
			 * armed here: its kick runs the drain again.
			 */
			if (waker_busy(w) || !armed_here) {
				(void)waker_idle(w);	/* WAKE_POLL */
				event_add(q->cq_ev, &next_pass);
			}
			return n;
		}
		switch (waker_idle(w)) {
		case WAKE_POLL:
			break;	/* a run with nothing to drain: look again */
		case WAKE_ARMED:
			armed_here = 1;
			break;
		case WAKE_SLEEP:
			return NULL;	/* the next push kicks */
		}
	}
}

uint64_t
cq_wakeups(struct cq *q)
{
	return waker_wakeups(&q->cq_waker);
}

uint64_t
cq_pushed(struct cq *q)
{
	return __atomic_load_n(&q->cq_pushed, __ATOMIC_RELAXED);
}
