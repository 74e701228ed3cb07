/*
 * ctl.c: the status socket server (see ctl.h; OpenBSD relayd's control.c).
 *
 * Everything here runs on the daemon's event thread: the listener, one
 * bufferevent per client, the handler calls. A client can cost the daemon
 * only bounded memory and no waiting:
 *   - input: the read high watermark stops reading at CTL_LINE_MAX + 2
 *     bytes (a longest line and its CRLF), so a line that does not end
 *     there is too long, and is answered and closed without buffering more;
 *   - output: replies queue in the bufferevent; a client whose unread
 *     replies pass CTL_OUT_MAX, or whose output makes no progress for
 *     CTL_WRITE_TIMEOUT seconds, is dropped (never waited for);
 *   - at most CTL_CLIENTS_MAX clients; one more is told "busy" and closed;
 *   - out of descriptors, the listener pauses for a second instead of
 *     spinning on accept (relayd's control_accept).
 *
 * Who frees what: struct ctl owns its clients; a client is freed by
 * client_free() only (it unlinks itself), either at once (error, drop) or,
 * when it is closing (EOF, line too long), once its output has drained.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common/ctl.h"
#include "common/unixsock.h"
#include "common/log.h"

struct ctl_client {
	struct ctl		*cc_ctl;
	struct bufferevent	*cc_bev;
	int			 cc_closing;	/* free once output drains */
	LIST_ENTRY(ctl_client)	 cc_entry;
};

struct ctl {
	struct event_base	*c_base;
	struct evconnlistener	*c_listener;
	struct event		*c_resume;	/* re-enables accept after EMFILE */
	char			 c_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t			 c_dev;		/* the socket we made, so that */
	ino_t			 c_ino;		/* ctl_free unlinks only that */
	ctl_handler		 c_handler;
	void			*c_arg;
	unsigned		 c_nclients;
	LIST_HEAD(, ctl_client)	 c_clients;
};


/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past
 * U+10FFFF. jansson refuses anything else in a string, and a request that
 * is not text is garbage anyway.
 */
static int
ctl_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0, n, k;
	unsigned c, min;

	while (i < len) {
		c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1; c &= 0x1f; min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2; c &= 0x0f; min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3; c &= 0x07; min = 0x10000;
		} else {
			return 0;
		}
		if (len - i - 1 < n)
			return 0;
		for (k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			c = (c << 6) | (s[i + k] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

json_t *
ctl_error(const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	size_t i, len;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* A message may quote the request, or be cut mid-character. */
	len = strlen(msg);
	if (!ctl_utf8_valid((const unsigned char *)msg, len))
		for (i = 0; i < len; i++)
			if ((unsigned char)msg[i] >= 0x80)
				msg[i] = '?';
	return json_pack("{s:b, s:{s:s, s:s}}", "ok", 0, "error",
	    "code", code, "message", msg);
}

static void
client_free(struct ctl_client *cc)
{
	LIST_REMOVE(cc, cc_entry);
	cc->cc_ctl->c_nclients--;
	bufferevent_free(cc->cc_bev);
	free(cc);
}

/*
 * Closes once what is queued has gone (or the write timeout drops it).
 * Returns -1 when cc was freed at once.
 */
static int
client_close_after_output(struct ctl_client *cc)
{
	cc->cc_closing = 1;
	bufferevent_disable(cc->cc_bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(cc->cc_bev)) == 0) {
		client_free(cc);
		return -1;
	}
	return 0;
}

/*
 * Queues one reply line. Takes reply (a new reference, may be NULL: then
 * "internal"). Returns 0, or -1 when the client was dropped for not
 * reading (cc is freed then).
 */
static int
client_reply(struct ctl_client *cc, json_t *reply)
{
	struct evbuffer *out = bufferevent_get_output(cc->cc_bev);
	char *s = NULL;

	if (reply != NULL)
		s = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	if (s == NULL) {
		reply = ctl_error("internal", "cannot encode the reply");
		s = reply != NULL ? json_dumps(reply, JSON_COMPACT) : NULL;
		json_decref(reply);
		if (s == NULL) {
			client_free(cc);
			return -1;
		}
	}
	if (evbuffer_add(out, s, strlen(s)) != 0 ||
	    evbuffer_add(out, "\n", 1) != 0) {
		free(s);
		client_free(cc);
		return -1;
	}
	free(s);
	if (evbuffer_get_length(out) > CTL_OUT_MAX) {
		/* Never wait for a client: it reads its replies or goes. */
		log_debug("status socket: dropping a client with %zu bytes "
		    "of unread replies", evbuffer_get_length(out));
		client_free(cc);
		return -1;
	}
	return 0;
}

/*
 * The reply to one request line (len bytes, no EOL). Returns a new
 * reference, or NULL for an empty line (no reply).
 */
static json_t *
ctl_answer(struct ctl *c, char *line, size_t len)
{
	char *verb, *args, *end;
	json_t *reply, *full;

	if (len > CTL_LINE_MAX)
		return ctl_error("line-too-long",
		    "a request is at most %d bytes", CTL_LINE_MAX);
	if (memchr(line, '\0', len) != NULL ||
	    !ctl_utf8_valid((unsigned char *)line, len))
		return ctl_error("bad-argument",
		    "a request is one line of UTF-8 text");

	/* Trim blanks at both ends; what is left is "verb [args]". */
	end = line + len;
	while (end > line &&
	    (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	verb = line + strspn(line, " \t");
	if (*verb == '\0')
		return NULL;
	args = verb + strcspn(verb, " \t");
	if (*args != '\0') {
		*args++ = '\0';
		args += strspn(args, " \t");
	}

	reply = c->c_handler(c->c_arg, verb, args);
	if (reply == NULL)
		return ctl_error("unknown-command", "unknown command \"%.64s\"",
		    verb);
	if (!json_is_object(reply)) {
		json_decref(reply);
		return ctl_error("internal", "the reply to \"%.64s\" is not "
		    "an object", verb);
	}
	if (json_object_get(reply, "ok") != NULL)
		return reply;		/* ctl_error(), or the handler said */
	/* "ok" first, so that a person reading the line sees it first. */
	full = json_pack("{s:b}", "ok", 1);
	if (full == NULL || json_object_update(full, reply) != 0) {
		json_decref(full);
		json_decref(reply);
		return ctl_error("internal", "out of memory");
	}
	json_decref(reply);
	return full;
}

/*
 * Answers every complete line in the input, then checks what is left.
 * Returns -1 when cc was freed.
 */
static int
client_process(struct ctl_client *cc)
{
	struct evbuffer *in = bufferevent_get_input(cc->cc_bev);
	struct ctl *c = cc->cc_ctl;
	json_t *reply;
	size_t len;
	char *line;

	while (!cc->cc_closing &&
	    (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		reply = ctl_answer(c, line, len);
		free(line);
		if (reply == NULL)
			continue;
		if (client_reply(cc, reply) != 0)
			return -1;
		if (len > CTL_LINE_MAX)
			return client_close_after_output(cc);
	}
	if (!cc->cc_closing && evbuffer_get_length(in) >= CTL_LINE_MAX + 2) {
		/* No end of line within the longest line and its CRLF. */
		if (client_reply(cc, ctl_error("line-too-long",
		    "a request is at most %d bytes", CTL_LINE_MAX)) != 0)
			return -1;
		return client_close_after_output(cc);
	}
	return 0;
}

static void
client_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	(void)client_process(arg);
}

static void
client_write(struct bufferevent *bev, void *arg)
{
	struct ctl_client *cc = arg;

	(void)bev;
	if (cc->cc_closing)
		client_free(cc);
}

static void
client_event(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_client *cc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;
	json_t *reply;

	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
	    !cc->cc_closing) {
		/*
		 * The client finished sending ("printf status | nc -U"): a
		 * last line without its newline is still a request, and the
		 * replies already queued still go out.
		 */
		if (client_process(cc) != 0)
			return;
		if (!cc->cc_closing && (len = evbuffer_get_length(in)) > 0) {
			line = malloc(len + 1);
			if (line != NULL) {
				evbuffer_remove(in, line, len);
				line[len] = '\0';
				reply = ctl_answer(cc->cc_ctl, line, len);
				free(line);
				if (reply != NULL && client_reply(cc, reply) != 0)
					return;
			}
		}
		if (!cc->cc_closing)
			(void)client_close_after_output(cc);
		return;
	}
	/* An error, a write timeout, or EOF while closing: go now. */
	client_free(cc);
}

/* Tells a client over the limit "busy", as far as one write goes. */
static void
ctl_refuse(evutil_socket_t fd)
{
	json_t *reply;
	char *s;

	reply = ctl_error("busy", "too many status clients (at most %d)",
	    CTL_CLIENTS_MAX);
	s = reply != NULL ? json_dumps(reply, JSON_COMPACT) : NULL;
	json_decref(reply);
	if (s != NULL) {
		struct iovec iov[2] = {
			{ s, strlen(s) }, { (void *)"\n", 1 },
		};
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

		(void)sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		free(s);
	}
	evutil_closesocket(fd);
}

static void
ctl_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct ctl *c = arg;
	struct ctl_client *cc;
	struct timeval wtv = { CTL_WRITE_TIMEOUT, 0 };

	(void)l; (void)sa; (void)salen;
	if (c->c_nclients >= CTL_CLIENTS_MAX) {
		log_debug("status socket: %u clients, refusing one more",
		    c->c_nclients);
		ctl_refuse(fd);
		return;
	}
	if ((cc = calloc(1, sizeof(*cc))) == NULL ||
	    (cc->cc_bev = bufferevent_socket_new(c->c_base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		log_warnx("status socket: cannot set up a client");
		free(cc);
		evutil_closesocket(fd);
		return;
	}
	cc->cc_ctl = c;
	LIST_INSERT_HEAD(&c->c_clients, cc, cc_entry);
	c->c_nclients++;
	bufferevent_setcb(cc->cc_bev, client_read, client_write, client_event,
	    cc);
	bufferevent_setwatermark(cc->cc_bev, EV_READ, 0, CTL_LINE_MAX + 2);
	/* Only pending output is timed: an idle client may stay. */
	bufferevent_set_timeouts(cc->cc_bev, NULL, &wtv);
	bufferevent_enable(cc->cc_bev, EV_READ | EV_WRITE);
}

static void
ctl_resume(evutil_socket_t fd, short what, void *arg)
{
	struct ctl *c = arg;

	(void)fd; (void)what;
	evconnlistener_enable(c->c_listener);
}

static void
ctl_accept_error(struct evconnlistener *l, void *arg)
{
	struct ctl *c = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 1, 0 };

	log_warnx("status socket %s: accept: %s", c->c_path,
	    evutil_socket_error_to_string(err));
	if (err == EMFILE || err == ENFILE) {
		/* Out of descriptors: pause a second instead of spinning. */
		evconnlistener_disable(l);
		evtimer_add(c->c_resume, &tv);
	}
}

int
ctl_listen(struct ctl **out, struct event_base *base, const char *path,
    const char *group, ctl_handler h, void *arg, char *err, size_t errlen)
{
	struct ctl *c;
	struct stat st;
	int fd;

	*out = NULL;
	fd = unixsock_listen(path, group, "status.socket", "status.group",
	    CTL_CLIENTS_MAX, err, errlen);
	if (fd == -1)
		return -1;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "status.socket %s: out of memory", path);
		goto fail;
	}
	c->c_base = base;
	c->c_handler = h;
	c->c_arg = arg;
	LIST_INIT(&c->c_clients);
	memcpy(c->c_path, path, strlen(path) + 1);
	if (fstat(fd, &st) != 0 || stat(path, &st) != 0) {
		snprintf(err, errlen, "status.socket %s: stat: %s", path,
		    strerror(errno));
		goto fail;
	}
	c->c_dev = st.st_dev;
	c->c_ino = st.st_ino;
	c->c_resume = evtimer_new(base, ctl_resume, c);
	c->c_listener = evconnlistener_new(base, ctl_accept, c,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (c->c_resume == NULL || c->c_listener == NULL) {
		snprintf(err, errlen, "status.socket %s: cannot set up the "
		    "listener", path);
		goto fail;
	}
	evconnlistener_set_error_cb(c->c_listener, ctl_accept_error);
	*out = c;
	return 0;

fail:
	if (c != NULL && c->c_listener != NULL)
		evconnlistener_free(c->c_listener);	/* closes fd */
	else
		close(fd);
	if (c != NULL && c->c_resume != NULL)
		event_free(c->c_resume);
	unlink(path);
	free(c);
	return -1;
}

void
ctl_free(struct ctl *c)
{
	struct stat st;

	if (c == NULL)
		return;
	while (!LIST_EMPTY(&c->c_clients))
		client_free(LIST_FIRST(&c->c_clients));
	if (c->c_listener != NULL)
		evconnlistener_free(c->c_listener);
	if (c->c_resume != NULL)
		event_free(c->c_resume);
	/* Only our own socket: a successor may have bound the path since. */
	if (stat(c->c_path, &st) == 0 && st.st_dev == c->c_dev &&
	    st.st_ino == c->c_ino)
		unlink(c->c_path);
	free(c);
}
