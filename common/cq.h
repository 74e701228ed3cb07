/*
 * cq.h: the completion queue that brings finished work from engine
 * threads back to the event thread (the mirror's applied acks, the
 * primary's replies and the frames they release).
 *
 * Wake-ups follow DESIGN.md "Adaptive wake-ups" through a kick waker
 * (wake.h), whose kick activates the drain event:
 *
 *   WAKE_ADAPTIVE (the default)  a push signals only while the event thread
 *       is idle, and the first such push disables the signal. Each drain
 *       that took work schedules one more look (the drain event again,
 *       after the loop's next pass over its sockets), so under load the
 *       event thread picks up completions on its own and workers never
 *       signal. When that look (the poll) finds nothing, the signal is
 *       re-enabled, and one last look made before the loop may sleep.
 *   WAKE_ALWAYS  the first push onto an empty queue activates the event,
 *       every time (what cq did before the policy existed).
 *
 * Either way the event thread takes the whole queue at once, and the drain
 * callback calls cq_take exactly once per run (and may do its usual
 * end-of-drain work when it gets NULL: under WAKE_ADAPTIVE it is called
 * once more after every burst).
 */
#ifndef DUET_CQ_H
#define DUET_CQ_H

#include <pthread.h>
#include <stdint.h>

#include <event2/event.h>

#include "common/wake.h"

struct cq_node {
	struct cq_node	*cq_next;
};

struct cq {
	pthread_mutex_t	 cq_lock;
	struct cq_node	*cq_head;
	struct cq_node	*cq_tail;
	struct event	*cq_ev;
	struct waker	 cq_waker;	/* kick: event_active(cq_ev) */
	uint64_t	 cq_pushed;	/* atomic */
};

/* drain runs on base's thread; it calls cq_take. 0 or -ENOMEM. */
int  cq_init(struct cq *q, struct event_base *base,
    void (*drain)(evutil_socket_t, short, void *), void *arg);
/* Before the first push; WAKE_ADAPTIVE unless told. */
void cq_set_policy(struct cq *q, enum wake_policy policy);
void cq_fini(struct cq *q);
/* Any thread. */
void cq_push(struct cq *q, struct cq_node *n);
/*
 * The drain callback, once per run: everything queued, oldest first
 * (NULL-terminated), or NULL.
 */
struct cq_node *cq_take(struct cq *q);
/* Signals that activated the drain event from a pushing thread. */
uint64_t cq_wakeups(struct cq *q);
uint64_t cq_pushed(struct cq *q);

#endif
