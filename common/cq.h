/*
 * cq.h: the completion queue that brings finished work from engine
 * threads back to the event thread. The first push onto an empty queue
 * activates one event; the event thread then takes the whole queue at
 * once, so a burst of completions costs one wake-up.
 */
#ifndef DUET_CQ_H
#define DUET_CQ_H

#include <pthread.h>

#include <event2/event.h>

struct cq_node {
	struct cq_node	*cq_next;
};

struct cq {
	pthread_mutex_t	 cq_lock;
	struct cq_node	*cq_head;
	struct cq_node	*cq_tail;
	struct event	*cq_ev;
};

/* drain runs on base's thread; it calls cq_take. 0 or -ENOMEM. */
int  cq_init(struct cq *q, struct event_base *base,
    void (*drain)(evutil_socket_t, short, void *), void *arg);
void cq_fini(struct cq *q);
/* Any thread. */
void cq_push(struct cq *q, struct cq_node *n);
/* Event thread: everything queued, oldest first (NULL-terminated). */
struct cq_node *cq_take(struct cq *q);

#endif
