/*
 * stream.c: see stream.h. One persistent EV_READ event, and one EV_WRITE
 * event that is activated by hand when output is queued (no syscall) and
 * added to the loop only while the socket refuses more.
 */
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/stream.h"
#include "common/util.h"

struct stream {
	int		 s_fd;
	struct evbuffer	*s_in;
	struct evbuffer	*s_out;
	struct event	*s_rev;
	struct event	*s_wev;
	size_t		 s_in_max;
	size_t		 s_out_low;
	int		 s_reading;
	int		 s_blocked;	/* s_wev waits for the socket */
	struct stream_cbs s_cbs;
	void		*s_arg;
};

static void
stream_block(struct stream *s, int on)
{
	if (on == s->s_blocked)
		return;
	s->s_blocked = on;
	if (on)
		event_add(s->s_wev, NULL);
	else
		event_del(s->s_wev);
}

static void
stream_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;
	int n;

	(void)what;
	if (evbuffer_get_length(s->s_out) == 0) {
		stream_block(s, 0);
		return;
	}
	if ((n = evbuffer_write(s->s_out, fd)) < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			stream_block(s, 1);
			return;
		}
		stream_block(s, 0);
		s->s_cbs.end(s, STREAM_WRITE_ERROR, errno, s->s_arg);
		return;
	}
	stream_block(s, evbuffer_get_length(s->s_out) > 0);
	/* Last: the callee may free s. */
	if (evbuffer_get_length(s->s_out) <= s->s_out_low &&
	    s->s_cbs.drained != NULL)
		s->s_cbs.drained(s, s->s_arg);
}

static void
stream_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;
	struct evbuffer_iovec v[2];
	size_t have = evbuffer_get_length(s->s_in), want, left;
	ssize_t n;
	int nv, i;

	(void)what;
	if (have >= s->s_in_max) {
		stream_set_reading(s, 0);
		return;
	}
	want = MIN(s->s_in_max - have, STREAM_READ_MAX);
	nv = evbuffer_reserve_space(s->s_in, (ev_ssize_t)want, v, 2);
	if (nv <= 0) {
		s->s_cbs.end(s, STREAM_READ_ERROR, ENOMEM, s->s_arg);
		return;
	}
	/* The space reserved may be larger than asked for. */
	for (i = 0, left = want; i < nv; i++) {
		v[i].iov_len = MIN(v[i].iov_len, left);
		left -= v[i].iov_len;
	}
	n = readv(fd, (struct iovec *)v, nv);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	if (n <= 0) {
		s->s_cbs.end(s, n == 0 ? STREAM_EOF : STREAM_READ_ERROR,
		    n == 0 ? 0 : errno, s->s_arg);
		return;
	}
	for (i = 0, left = (size_t)n; i < nv && left > 0; i++) {
		v[i].iov_len = MIN(v[i].iov_len, left);
		left -= v[i].iov_len;
	}
	VERIFY(evbuffer_commit_space(s->s_in, v, i) == 0);
	s->s_cbs.read(s, s->s_arg);
}

/* Output was queued: write it once the current loop pass is done. */
static void
stream_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct stream *s = arg;

	(void)buf;
	if (info->n_added > 0 && !s->s_blocked)
		event_active(s->s_wev, EV_WRITE, 0);
}

struct stream *
stream_new(struct event_base *base, int fd, size_t in_max, size_t out_low,
    const struct stream_cbs *cbs, void *arg)
{
	struct stream *s;
	int fl;

	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->s_fd = fd;
	s->s_in_max = in_max;
	s->s_out_low = out_low;
	s->s_cbs = *cbs;
	s->s_arg = arg;
	s->s_in = evbuffer_new();
	s->s_out = evbuffer_new();
	s->s_rev = event_new(base, fd, EV_READ | EV_PERSIST, stream_read_cb,
	    s);
	s->s_wev = event_new(base, fd, EV_WRITE | EV_PERSIST, stream_write_cb,
	    s);
	if (s->s_in == NULL || s->s_out == NULL || s->s_rev == NULL ||
	    s->s_wev == NULL ||
	    evbuffer_add_cb(s->s_out, stream_out_cb, s) == NULL) {
		s->s_fd = -1;
		stream_free(s);
		return NULL;
	}
	return s;
}

void
stream_free(struct stream *s)
{
	if (s->s_rev != NULL)
		event_free(s->s_rev);
	if (s->s_wev != NULL)
		event_free(s->s_wev);
	if (s->s_in != NULL)
		evbuffer_free(s->s_in);
	if (s->s_out != NULL)
		evbuffer_free(s->s_out);
	if (s->s_fd != -1)
		close(s->s_fd);
	free(s);
}

struct evbuffer *
stream_input(struct stream *s)
{
	return s->s_in;
}

struct evbuffer *
stream_output(struct stream *s)
{
	return s->s_out;
}

void
stream_set_reading(struct stream *s, int on)
{
	on = !!on;
	if (on == s->s_reading)
		return;
	s->s_reading = on;
	if (on)
		event_add(s->s_rev, NULL);
	else
		event_del(s->s_rev);
}

int
stream_reading(const struct stream *s)
{
	return s->s_reading;
}
