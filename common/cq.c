/* cq.c: see cq.h. */
#include <errno.h>

#include "common/cq.h"

int
cq_init(struct cq *q, struct event_base *base,
    void (*drain)(evutil_socket_t, short, void *), void *arg)
{
	pthread_mutex_init(&q->cq_lock, NULL);
	q->cq_head = q->cq_tail = NULL;
	q->cq_ev = event_new(base, -1, 0, drain, arg);
	return q->cq_ev == NULL ? -ENOMEM : 0;
}

void
cq_fini(struct cq *q)
{
	if (q->cq_ev != NULL)
		event_free(q->cq_ev);
	q->cq_ev = NULL;
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
	if (was_empty)
		event_active(q->cq_ev, EV_READ, 0);
}

struct cq_node *
cq_take(struct cq *q)
{
	struct cq_node *n;

	pthread_mutex_lock(&q->cq_lock);
	n = q->cq_head;
	q->cq_head = q->cq_tail = NULL;
	pthread_mutex_unlock(&q->cq_lock);
	return n;
}
