/*
 * stream.h: a non-blocking byte stream on a socket, plain or TLS, for the
 * data paths (NBD clients, the replication link). It does what a libevent
 * bufferevent does, with three differences that matter under load:
 *
 *  - a readable socket is read with one call of up to STREAM_READ_MAX
 *    bytes. libevent 2.1's socket bufferevent reads at most 4 KiB per loop
 *    pass, so a 64 KiB WRITE took 17 passes; its TLS bufferevent reads a
 *    record header and body with two calls;
 *  - output is written at the end of the loop pass that queued it, all of
 *    it in one call (TLS: records of up to 16 KiB, encrypted into a BIO
 *    pair and sent together). EV_WRITE is armed only while the socket is
 *    full, where a bufferevent arms and disarms it (two epoll_ctl calls)
 *    for every write (after stream_offload, a sender thread encrypts and
 *    writes instead);
 *  - TLS never touches the socket itself: OpenSSL works on a BIO pair
 *    whose other end this module moves to and from the socket, so records
 *    read ahead are never stranded (the stall that keeps read-ahead off in
 *    a TLS bufferevent).
 *
 * Callbacks run from the event loop only, never from inside a stream_*
 * call, so code that queues output may run anywhere on the event thread.
 * A callback may free its stream.
 */
#ifndef DUET_STREAM_H
#define DUET_STREAM_H

#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

struct event_base;
struct evbuffer;
struct stream;
struct timeval;

#define STREAM_READ_MAX	(256u << 10)	/* bytes per read call */

enum stream_end {
	STREAM_EOF,			/* the peer closed its side */
	STREAM_READ_ERROR,		/* err is the errno */
	STREAM_WRITE_ERROR,		/* err is the errno */
	STREAM_CONNECT_ERROR,		/* err is the errno */
	STREAM_TLS_ERROR,		/* see stream_tls_error() */
	STREAM_TIMEOUT,			/* nothing read for the timeout */
};

struct stream_cbs {
	/* Input grew. */
	void	(*read)(struct stream *, void *arg);
	/* A write left the output (TLS: plaintext and records not yet
	 * sent) at or below the low mark. NULL: not wanted. */
	void	(*drained)(struct stream *, void *arg);
	/* TLS: the handshake is done. NULL: not wanted. */
	void	(*connected)(struct stream *, void *arg);
	/* The stream is finished; the callee frees it. After
	 * STREAM_TIMEOUT alone it still works (and may say goodbye). */
	void	(*end)(struct stream *, enum stream_end, int err, void *arg);
};

/*
 * Takes fd (made non-blocking here; closed by stream_free). Reads stop
 * while the input holds in_max bytes; out_low is the drained mark.
 * Reading starts disabled. NULL on failure (fd stays open).
 */
struct stream *stream_new(struct event_base *base, int fd, size_t in_max,
    size_t out_low, const struct stream_cbs *cbs, void *arg);

/*
 * TLS on an accepted socket (the server side of the handshake). Takes fd
 * and ssl (freed by stream_free, also on failure).
 */
struct stream *stream_new_tls_accept(struct event_base *base, int fd,
    SSL *ssl, size_t in_max, size_t out_low, const struct stream_cbs *cbs,
    void *arg);

/*
 * TLS to addr: connects (TCP_NODELAY) and runs the client handshake.
 * Takes ssl. NULL with errno set when no socket could be made.
 */
struct stream *stream_connect_tls(struct event_base *base,
    const struct sockaddr *addr, socklen_t addrlen, SSL *ssl, size_t in_max,
    size_t out_low, const struct stream_cbs *cbs, void *arg);

/*
 * Frees s, and what it has not handed to the kernel yet (owners wait for
 * stream_output_pending() to reach 0 first). The kernel still sends what
 * it holds: a stream that did not fail shuts its write side and drops
 * what the peer still sends, until the peer's EOF or 2 s, so that the
 * close sends no reset.
 */
void stream_free(struct stream *s);
/* At exit, before the base is freed: closes those sockets now, after
 * dropping what they hold. */
void stream_linger_end_all(void);

/*
 * Hands a TLS stream's writes to a thread of its own, from now on: it
 * encrypts the output and sends it, while the loop's thread only queues
 * plaintext (and still reads and decrypts). Worth it when the loop's
 * thread is the bottleneck and a core is idle; it costs a wake-up of the
 * sender per pass that finds it asleep. The owner then only appends to
 * the output, on the loop's thread: each sender pass takes whatever is
 * queued. Callbacks still run on the loop's thread, from the loop; the
 * drained callback is not supported.
 * Requires evthread_use_pthreads() before the base was made, and the
 * handshake done. 0, or -1 with errno (EINVAL: not an established TLS
 * stream, or a drained callback) and s unchanged.
 */
int stream_offload(struct stream *s);

struct evbuffer *stream_input(struct stream *s);
/* Anything added here is written at the end of the current loop pass. */
struct evbuffer *stream_output(struct stream *s);
/* Output not yet handed to the kernel, TLS records included. */
size_t stream_output_pending(struct stream *s);

void stream_set_reading(struct stream *s, int on);
int stream_reading(const struct stream *s);

/* end(STREAM_TIMEOUT) after tv with reading enabled and nothing read. */
void stream_set_timeout(struct stream *s, const struct timeval *tv);

SSL *stream_ssl(struct stream *s);

/*
 * Runs base until event_base_loopexit() or _loopbreak(). With poll_us, the
 * loop polls: after a pass in which some stream read input, it keeps
 * looking without sleeping (epoll with a zero timeout) for a window with no
 * input, and only then sleeps in epoll_wait. Polling saves the wake-up of a
 * sleeping thread (tens of microseconds on a virtual machine) at the price
 * of the CPU spent looking. The window adapts (struct stream_pollwin)
 * between 0 and poll_us: idle or at a low rate it is 0 and the loop sleeps
 * as with poll_us 0; and it is 0 while the host's CPUs have less than
 * STREAM_POLL_SPARE_CPUS to spare (read from /proc/stat every
 * STREAM_POLL_LOAD_NS), where polling would take time from the work.
 * 0: always sleep (event_base_dispatch).
 */
void stream_loop(struct event_base *base, unsigned poll_us);
/* Non-blocking passes stream_loop made while polling. */
uint64_t stream_loop_polls(void);
/* stream_loop's poll window now, in microseconds (0 while the host has no
 * CPU to spare). */
unsigned stream_loop_window_us(void);

/*
 * The poll window, as halt polling in KVM sizes its own. After the loop
 * slept and input woke it, idle_ns after the last input: if a window of
 * pw_max_ns would have caught that input, the window doubles (from
 * STREAM_POLL_START_NS, up to pw_max_ns); if not, polling would have been
 * spent in vain and the window halves (to 0 below the start). Input that
 * arrives while the loop polls leaves it as it is.
 *
 * And by processor load: stream_pollwin_load gets the CPUs the host left
 * idle over the last interval and the CPUs this loop spent polling in vain
 * (idle but for the polling); while the two come to less than
 * STREAM_POLL_SPARE_CPUS, the window in effect (stream_pollwin_ns) is 0:
 * a polling thread would take a CPU that another thread, the peer's or a
 * client's, is waiting for.
 */
#define STREAM_POLL_START_NS	10000u
#define STREAM_POLL_SPARE_CPUS	0.5
#define STREAM_POLL_LOAD_NS	(100 * UINT64_C(1000000))
struct stream_pollwin {
	uint64_t	pw_max_ns;
	uint64_t	pw_ns;		/* grown and shrunk by input */
	int		pw_spare;	/* the host has CPU to spare */
};
void stream_pollwin_init(struct stream_pollwin *pw, unsigned max_us);
void stream_pollwin_slept(struct stream_pollwin *pw, uint64_t idle_ns);
void stream_pollwin_load(struct stream_pollwin *pw, double idle_cpus,
    double polled_cpus);
/* The window in effect, in nanoseconds. */
uint64_t stream_pollwin_ns(const struct stream_pollwin *pw);

/* The OpenSSL errors that ended a TLS stream, oldest first; 0 at the end. */
unsigned long stream_tls_error(struct stream *s);

#endif
