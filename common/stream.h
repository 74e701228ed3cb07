/*
 * stream.h: a non-blocking byte stream on a plain socket, for the NBD data
 * path. It is a bufferevent with two differences that matter under load:
 *
 *  - a readable socket is read with one call of up to STREAM_READ_MAX
 *    bytes. libevent 2.1's bufferevent reads at most 4 KiB per loop pass,
 *    so a 64 KiB WRITE took 17 passes and a 4 KiB one two;
 *  - output is written once, at the end of the loop pass that queued it,
 *    with every reply queued in that pass in one writev. EV_WRITE is armed
 *    only while the socket is full, where a bufferevent arms and disarms
 *    it (two epoll_ctl calls) for every write.
 *
 * Callbacks run from the event loop only, never from inside a stream_*
 * call, so code that queues output may be called from anywhere on the
 * event thread.
 */
#ifndef DUET_STREAM_H
#define DUET_STREAM_H

#include <stddef.h>

struct event_base;
struct evbuffer;
struct stream;

#define STREAM_READ_MAX	(256u << 10)	/* bytes per read call */

enum stream_end {
	STREAM_EOF,			/* the peer closed its side */
	STREAM_READ_ERROR,		/* err is the errno */
	STREAM_WRITE_ERROR,
};

struct stream_cbs {
	/* Input grew. */
	void	(*read)(struct stream *, void *arg);
	/* A write left the output at or below the low mark. */
	void	(*drained)(struct stream *, void *arg);
	/* The stream is finished; the callee frees it. */
	void	(*end)(struct stream *, enum stream_end, int err, void *arg);
};

/*
 * Takes fd (made non-blocking here; closed by stream_free). Reads stop
 * while the input holds in_max bytes; out_low is the drained mark.
 * Reading starts disabled. NULL on allocation failure (fd stays open).
 */
struct stream *stream_new(struct event_base *base, int fd, size_t in_max,
    size_t out_low, const struct stream_cbs *cbs, void *arg);
void stream_free(struct stream *s);

struct evbuffer *stream_input(struct stream *s);
/* Anything added here is written at the end of the current loop pass. */
struct evbuffer *stream_output(struct stream *s);

void stream_set_reading(struct stream *s, int on);
int stream_reading(const struct stream *s);

#endif
