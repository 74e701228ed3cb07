/*
 * resolve.h: getaddrinfo on a thread of its own. A name server that does
 * not answer holds getaddrinfo for its whole timeout (about 10 s with
 * glibc's defaults); on the event thread that would stall every client
 * for as long, at each reconnect of a cut link whose resolver went with
 * it. The thread keeps getaddrinfo's own lookup (nsswitch, /etc/hosts),
 * which a DNS-only resolver would not.
 */
#ifndef DUET_RESOLVE_H
#define DUET_RESOLVE_H

#include <netdb.h>

struct event_base;
struct resolve;

/* On the loop's thread, once: rc is getaddrinfo's, res (rc 0) is the
 * callee's to freeaddrinfo(). */
typedef void (*resolve_cb)(int rc, struct addrinfo *res, void *arg);

/*
 * Starts resolving host and port (SOCK_STREAM, any family). Requires
 * evthread_use_pthreads() before base was made. NULL with errno when no
 * thread could be started.
 */
struct resolve *resolve_start(struct event_base *base, const char *host,
    const char *port, resolve_cb cb, void *arg);

/* The callback will not run; the thread, if still waiting, cleans up
 * after itself. Loop's thread only, and only before the callback ran. */
void resolve_cancel(struct resolve *r);

#endif
