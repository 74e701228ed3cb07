/*
 * resolve.c: see resolve.h.
 *
 * The request is shared by the loop's thread and a detached resolver
 * thread, and freed by whichever lets go of it last (r_refs, under
 * r_lock). The thread touches the event only while the request is not
 * cancelled, under r_lock, so a cancel (which frees the event at once)
 * never races an event_active().
 */
#include <sys/socket.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/resolve.h"

struct resolve {
	pthread_mutex_t	 r_lock;
	int		 r_refs;	/* the thread's, the loop's */
	int		 r_cancelled;
	struct event	*r_ev;		/* the loop's: run the callback */
	resolve_cb	 r_cb;
	void		*r_arg;
	char		 r_host[256];
	char		 r_port[32];
	int		 r_rc;
	struct addrinfo	*r_res;
};

/* Drops one reference, under r_lock; frees r with the last. */
static void
unref_locked(struct resolve *r)
{
	int last = --r->r_refs == 0;

	pthread_mutex_unlock(&r->r_lock);
	if (!last)
		return;
	if (r->r_res != NULL)
		freeaddrinfo(r->r_res);
	pthread_mutex_destroy(&r->r_lock);
	free(r);
}

static void *
resolver(void *arg)
{
	struct resolve *r = arg;
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(r->r_host, r->r_port, &hints, &res);
	pthread_mutex_lock(&r->r_lock);
	r->r_rc = rc;
	r->r_res = rc == 0 ? res : NULL;
	if (!r->r_cancelled)
		event_active(r->r_ev, EV_TIMEOUT, 0);
	unref_locked(r);
	return NULL;
}

static void
resolved(evutil_socket_t fd, short what, void *arg)
{
	struct resolve *r = arg;
	struct addrinfo *res;
	resolve_cb cb = r->r_cb;
	void *cbarg = r->r_arg;
	int rc;

	(void)fd; (void)what;
	event_free(r->r_ev);
	pthread_mutex_lock(&r->r_lock);
	rc = r->r_rc;
	res = r->r_res;
	r->r_res = NULL;		/* the callee's now */
	unref_locked(r);
	cb(rc, res, cbarg);
}

struct resolve *
resolve_start(struct event_base *base, const char *host, const char *port,
    resolve_cb cb, void *arg)
{
	struct resolve *r;
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	if (snprintf(r->r_host, sizeof(r->r_host), "%s", host) >=
	    (int)sizeof(r->r_host) ||
	    snprintf(r->r_port, sizeof(r->r_port), "%s", port) >=
	    (int)sizeof(r->r_port)) {
		free(r);
		errno = ENAMETOOLONG;
		return NULL;
	}
	if ((r->r_ev = event_new(base, -1, 0, resolved, r)) == NULL) {
		free(r);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&r->r_lock, NULL);
	r->r_refs = 2;
	r->r_cb = cb;
	r->r_arg = arg;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, resolver, r);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		event_free(r->r_ev);
		pthread_mutex_destroy(&r->r_lock);
		free(r);
		errno = rc;
		return NULL;
	}
	return r;
}

void
resolve_cancel(struct resolve *r)
{
	pthread_mutex_lock(&r->r_lock);
	r->r_cancelled = 1;
	event_free(r->r_ev);		/* also out of the active queue */
	r->r_ev = NULL;
	unref_locked(r);
}
