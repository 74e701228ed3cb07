/*
 * faultproxy.c: duet-faultproxy, a TCP proxy that injects network faults
 * between duet-primary and duet-mirror for the tests in tests/fault/.
 *
 *	duet-faultproxy -l 127.0.0.1:LPORT -t 127.0.0.1:TPORT -c CTLSOCK [-v]
 *
 * Listens on LPORT and forwards each accepted connection to TPORT, bytes
 * both ways, opaquely: TLS passes through untouched. Once the listener and
 * the control socket are ready it prints "listening 127.0.0.1:PORT" on
 * stdout (so LPORT may be 0) and runs until SIGTERM or SIGINT (exit 0).
 * Bad arguments: a message naming the option, exit 2; a listener or socket
 * that cannot be set up: exit 1. -v logs each connection on stderr; mode
 * changes and errors are always logged there.
 *
 * CTLSOCK is a Unix stream socket taking one command a line, one or
 * several per connection; each is answered "ok" or "error: REASON" (status
 * answers its own line). A mode holds for existing and new connections:
 *
 *	pass		forward as the bytes come (the default)
 *	delay MS	forward each chunk MS ms after it was read, in order
 *			per direction (delay 0 = pass)
 *	rate BPS	at most BPS bytes a second each direction (rate 0 = pass)
 *	blackhole	forward nothing either way: bytes read (and bytes still
 *			queued) are dropped, sockets stay open, and an EOF or a
 *			reset from either end is held back: a partition TCP
 *			does not notice. New connections are blackholed too.
 *	refuse		close every connection, and new ones once accepted
 *	reset		close every connection with an RST on both sides
 *			(SO_LINGER 0), then pass
 *	status		"mode=M conns=N bytes_up=N bytes_down=N": bytes_up
 *			counts bytes forwarded client to target, bytes_down
 *			target to client; dropped bytes do not count
 *
 * Leaving blackhole delivers the held EOFs, and closes with an RST any
 * connection one of whose ends went away meanwhile. The dropped bytes are
 * gone for good: a TLS session that lived through a blackhole fails on its
 * next record, as it would behind a middlebox that lost data.
 *
 * Design. One event thread owns everything. A connection is two
 * bufferevents (side 0 the client, side 1 the target) and two directions,
 * each named by its source side: dir 0 is up, dir 1 is down. In pass mode
 * a direction moves its source's input straight to the other side's
 * output; whenever bytes must wait (delay, rate, or an older chunk still
 * queued, which keeps the order) they go through the direction's queue of
 * chunks stamped with the time they were read, and a timer per direction
 * sends the head when its time comes. An EOF goes through the same queue
 * as a chunk without a buffer, so it arrives in order and late like the
 * bytes; it becomes shutdown(SHUT_WR) on the other side once that side's
 * output has drained, and both directions shut closes the connection.
 * Memory is bounded: a direction holding more than FP_MAXQ (queue plus
 * the output buffer) stops reading its source until it is down to half;
 * so under delay MS a direction carries at most 8 MiB per MS, like a
 * link with that window.
 *
 * A connection is freed only as the last step of a callback (conn_settle
 * once both directions are shut, an error, a mode change); nothing
 * touches it afterwards.
 *
 * From a test (tests/fault/01-proxy.sh does all of this):
 *
 *	duet-faultproxy -l 127.0.0.1:0 -t 127.0.0.1:$PORT -c $T/proxy.ctl \
 *	    >$T/proxy.out 2>$T/proxy.log &
 *	... wait for "listening 127.0.0.1:LPORT" in $T/proxy.out, point the
 *	    primary at LPORT ...
 *	echo blackhole | socat -t 2 - UNIX-CONNECT:$T/proxy.ctl	# "ok"
 */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#define FP_MAXQ		(8 * 1024 * 1024)	/* held per direction, at most */
#define FP_LINE_MAX	256		/* a control line, at most */
#define FP_DELAY_MAX	3600000		/* ms */
#define FP_RATE_MAX	UINT64_C(1000000000000)	/* bytes a second */
#define FP_EXIT_USAGE	2
#define FP_EXIT_FAIL	1

enum fp_mode { M_PASS, M_DELAY, M_RATE, M_BLACKHOLE, M_REFUSE };

static const char *const mode_name[] = {
	"pass", "delay", "rate", "blackhole", "refuse"
};

struct chunk {
	TAILQ_ENTRY(chunk) ch_entry;
	uint64_t	 ch_at;		/* us, monotonic: when it was read */
	struct evbuffer	*ch_buf;	/* NULL: the source's EOF */
};
TAILQ_HEAD(chunkq, chunk);

struct conn;

struct dir {
	struct conn	*d_conn;
	int		 d_src, d_dst;	/* sides: c_bev[] index */
	struct chunkq	 d_q;
	size_t		 d_qbytes;	/* bytes in d_q */
	struct event	*d_timer;	/* sends the head of d_q when due */
	double		 d_tokens;	/* rate: bytes that may go now */
	uint64_t	 d_tok_at;	/* us, d_tokens last refilled */
	int		 d_eof_read;	/* the source said EOF */
	int		 d_eof_due;	/* that EOF left the queue */
	int		 d_shut;	/* shutdown(SHUT_WR) done on d_dst */
	int		 d_paused;	/* reading d_src stopped: FP_MAXQ */
};

struct conn {
	TAILQ_ENTRY(conn) c_entry;
	uint64_t	 c_id;
	struct bufferevent *c_bev[2];	/* client, target; NULL once gone */
	struct dir	 c_dir[2];	/* up (from client), down */
};
TAILQ_HEAD(connq, conn);

/* The proxy: one per process, touched by the event thread only. */
static struct {
	struct event_base *base;
	struct evconnlistener *lst;
	struct evconnlistener *ctl;
	struct event	*lst_pause;	/* EMFILE: accept again in a second */
	const char	*ctl_path;
	struct sockaddr_storage target;
	int		 target_len;
	enum fp_mode	 mode;
	uint64_t	 delay_us;
	uint64_t	 rate;		/* bytes a second */
	struct connq	 conns;
	unsigned	 nconns;
	uint64_t	 next_id;
	uint64_t	 bytes[2];	/* forwarded: up, down */
	int		 verbose;
} px;

/* A control connection. */
struct ctlconn {
	struct bufferevent *cc_bev;
	int		 cc_closing;	/* free once the replies are out */
};

static void
logx(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "duet-faultproxy: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void
chunk_free(struct dir *d, struct chunk *ch)
{
	TAILQ_REMOVE(&d->d_q, ch, ch_entry);
	if (ch->ch_buf != NULL) {
		d->d_qbytes -= evbuffer_get_length(ch->ch_buf);
		evbuffer_free(ch->ch_buf);
	}
	free(ch);
}

/* Drops the queued bytes; with keep_eof, a queued EOF stays. */
static void
dir_drop(struct dir *d, int keep_eof)
{
	struct chunk *ch, *next;

	for (ch = TAILQ_FIRST(&d->d_q); ch != NULL; ch = next) {
		next = TAILQ_NEXT(ch, ch_entry);
		if (ch->ch_buf != NULL || !keep_eof)
			chunk_free(d, ch);
	}
}

/* Bytes this direction holds: its queue and the output buffer after it. */
static size_t
dir_held(const struct dir *d)
{
	struct bufferevent *dst = d->d_conn->c_bev[d->d_dst];

	return d->d_qbytes +
	    (dst != NULL ? evbuffer_get_length(bufferevent_get_output(dst)) : 0);
}

static void
dir_arm(struct dir *d, uint64_t us)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	evtimer_add(d->d_timer, &tv);
}

/* rate: refill the bucket; a burst of 50 ms at most. */
static void
dir_refill(struct dir *d, uint64_t now)
{
	double burst = px.rate / 20.0;

	if (burst < 1)
		burst = 1;
	d->d_tokens += (double)(now - d->d_tok_at) * (double)px.rate / 1e6;
	if (d->d_tokens > burst)
		d->d_tokens = burst;
	d->d_tok_at = now;
}

/*
 * Sends what the mode lets go from the head of the queue, and arms the
 * timer for the rest. Nothing moves in blackhole.
 */
static void
dir_pump(struct dir *d)
{
	struct bufferevent *dst = d->d_conn->c_bev[d->d_dst];
	struct evbuffer *out;
	struct chunk *ch;
	uint64_t now, delay, wait;
	size_t len, n;
	int moved;

	if (px.mode == M_BLACKHOLE || dst == NULL)
		return;
	out = bufferevent_get_output(dst);
	delay = px.mode == M_DELAY ? px.delay_us : 0;
	now = now_us();
	while ((ch = TAILQ_FIRST(&d->d_q)) != NULL) {
		if (ch->ch_at + delay > now) {
			dir_arm(d, ch->ch_at + delay - now);
			return;
		}
		if (ch->ch_buf == NULL) {
			chunk_free(d, ch);
			d->d_eof_due = 1;
			continue;
		}
		len = n = evbuffer_get_length(ch->ch_buf);
		if (px.mode == M_RATE) {
			dir_refill(d, now);
			if (d->d_tokens < 1) {
				/* At least a millisecond: no busy timer. */
				wait = (uint64_t)((1 - d->d_tokens) * 1e6 /
				    (double)px.rate);
				dir_arm(d, wait < 1000 ? 1000 : wait);
				return;
			}
			if ((double)n > d->d_tokens)
				n = (size_t)d->d_tokens;
			d->d_tokens -= (double)n;
		}
		moved = evbuffer_remove_buffer(ch->ch_buf, out, n);
		if (moved < 0) {
			logx("conn %" PRIu64 ": evbuffer_remove_buffer failed",
			    d->d_conn->c_id);
			return;
		}
		d->d_qbytes -= (size_t)moved;
		px.bytes[d->d_src] += (uint64_t)moved;
		if ((size_t)moved == len)
			chunk_free(d, ch);
	}
	evtimer_del(d->d_timer);
}

/* Moves what the source has read: forward, queue, or drop. */
static void
dir_read(struct dir *d)
{
	struct conn *c = d->d_conn;
	struct evbuffer *in;
	struct chunk *ch;
	size_t len;

	if (c->c_bev[d->d_src] == NULL)
		return;
	in = bufferevent_get_input(c->c_bev[d->d_src]);
	if ((len = evbuffer_get_length(in)) == 0)
		return;
	if (px.mode == M_BLACKHOLE || c->c_bev[d->d_dst] == NULL) {
		evbuffer_drain(in, len);
		return;
	}
	if (px.mode == M_PASS && TAILQ_EMPTY(&d->d_q)) {
		evbuffer_add_buffer(bufferevent_get_output(c->c_bev[d->d_dst]),
		    in);
		px.bytes[d->d_src] += len;
		return;
	}
	if ((ch = calloc(1, sizeof(*ch))) == NULL ||
	    (ch->ch_buf = evbuffer_new()) == NULL) {
		/* Out of memory in a test tool: say so and stop. */
		logx("out of memory");
		exit(FP_EXIT_FAIL);
	}
	ch->ch_at = now_us();
	evbuffer_add_buffer(ch->ch_buf, in);
	TAILQ_INSERT_TAIL(&d->d_q, ch, ch_entry);
	d->d_qbytes += len;
}

static void
dir_eof(struct dir *d)
{
	struct chunk *ch;

	dir_read(d);
	if (d->d_eof_read)
		return;
	d->d_eof_read = 1;
	if ((ch = calloc(1, sizeof(*ch))) == NULL) {
		logx("out of memory");
		exit(FP_EXIT_FAIL);
	}
	ch->ch_at = now_us();
	TAILQ_INSERT_TAIL(&d->d_q, ch, ch_entry);
}

/*
 * After any progress: pump, pass a due EOF on once the output drained,
 * pause or resume reading the source.
 */
static void
dir_settle(struct dir *d)
{
	struct conn *c = d->d_conn;
	struct bufferevent *src = c->c_bev[d->d_src];
	struct bufferevent *dst = c->c_bev[d->d_dst];
	size_t held;

	dir_pump(d);
	if (d->d_eof_due && !d->d_shut && dst != NULL &&
	    evbuffer_get_length(bufferevent_get_output(dst)) == 0) {
		if (shutdown(bufferevent_getfd(dst), SHUT_WR) == -1 &&
		    errno != ENOTCONN)
			logx("conn %" PRIu64 ": shutdown: %s", c->c_id,
			    strerror(errno));
		d->d_shut = 1;
	}
	if (src == NULL || d->d_eof_read)
		return;
	held = dir_held(d);
	if (!d->d_paused && held > FP_MAXQ) {
		bufferevent_disable(src, EV_READ);
		d->d_paused = 1;
	} else if (d->d_paused && held <= FP_MAXQ / 2) {
		bufferevent_enable(src, EV_READ);
		d->d_paused = 0;
	}
}

/* Closes both sides, with an RST when rst; frees c. */
static void
conn_free(struct conn *c, int rst, const char *why)
{
	struct linger lg = { 1, 0 };
	int i, fd;

	if (px.verbose)
		logx("conn %" PRIu64 ": closed (%s)", c->c_id, why);
	for (i = 0; i < 2; i++) {
		if (c->c_bev[i] != NULL) {
			fd = bufferevent_getfd(c->c_bev[i]);
			if (rst && fd != -1 && setsockopt(fd, SOL_SOCKET,
			    SO_LINGER, &lg, sizeof(lg)) == -1)
				logx("conn %" PRIu64 ": SO_LINGER: %s",
				    c->c_id, strerror(errno));
			bufferevent_free(c->c_bev[i]);
			c->c_bev[i] = NULL;
		}
		dir_drop(&c->c_dir[i], 0);
		event_free(c->c_dir[i].d_timer);
	}
	TAILQ_REMOVE(&px.conns, c, c_entry);
	px.nconns--;
	free(c);
}

static void
conn_settle(struct conn *c)
{
	dir_settle(&c->c_dir[0]);
	dir_settle(&c->c_dir[1]);
	if (c->c_dir[0].d_shut && c->c_dir[1].d_shut)
		conn_free(c, 0, "both ends closed");
}

static int
conn_side(const struct conn *c, const struct bufferevent *bev)
{
	return c->c_bev[0] == bev ? 0 : 1;
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	dir_read(&c->c_dir[conn_side(c, bev)]);
	conn_settle(c);
}

/* The output of a side drained: the direction into it may move on. */
static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_settle(arg);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	int side = conn_side(c, bev);

	if (what & BEV_EVENT_CONNECTED) {
		if (px.verbose)
			logx("conn %" PRIu64 ": connected to the target",
			    c->c_id);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		if (px.verbose || side == 1)
			logx("conn %" PRIu64 ": %s: %s", c->c_id,
			    side == 0 ? "client" : "target",
			    evutil_socket_error_to_string(
			    EVUTIL_SOCKET_ERROR()));
		if (px.mode != M_BLACKHOLE || c->c_bev[!side] == NULL) {
			/* The other end sees what this one did: a reset. */
			conn_free(c, 1, "reset by an end");
			return;
		}
		/* A partition hides it: the other end stays open. */
		bufferevent_free(c->c_bev[side]);
		c->c_bev[side] = NULL;
		dir_drop(&c->c_dir[!side], 0);
		conn_settle(c);
		return;
	}
	if (what & BEV_EVENT_EOF)
		dir_eof(&c->c_dir[side]);
	conn_settle(c);
}

static void
dir_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dir *d = arg;

	(void)fd;
	(void)what;
	conn_settle(d->d_conn);
}

static void
set_nodelay(evutil_socket_t fd)
{
	int one = 1;

	/* Nagle in the proxy would add latency the test did not ask for. */
	if (fd != -1)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	char host[INET6_ADDRSTRLEN] = "?";
	struct conn *c;
	int i, port = 0;

	(void)l;
	(void)salen;
	(void)arg;
	if (px.mode == M_REFUSE) {
		evutil_closesocket(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		logx("out of memory");
		exit(FP_EXIT_FAIL);
	}
	c->c_id = ++px.next_id;
	TAILQ_INSERT_TAIL(&px.conns, c, c_entry);
	px.nconns++;
	if (px.verbose) {
		if (sa->sa_family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)sa;

			evutil_inet_ntop(AF_INET, &sin->sin_addr, host,
			    sizeof(host));
			port = ntohs(sin->sin_port);
		} else if (sa->sa_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;

			evutil_inet_ntop(AF_INET6, &s6->sin6_addr, host,
			    sizeof(host));
			port = ntohs(s6->sin6_port);
		}
		logx("conn %" PRIu64 ": from %s:%d", c->c_id, host, port);
	}
	for (i = 0; i < 2; i++) {
		struct dir *d = &c->c_dir[i];

		d->d_conn = c;
		d->d_src = i;
		d->d_dst = !i;
		TAILQ_INIT(&d->d_q);
		d->d_tok_at = now_us();
		if ((d->d_timer = evtimer_new(px.base, dir_timer_cb, d)) ==
		    NULL) {
			logx("evtimer_new failed");
			exit(FP_EXIT_FAIL);
		}
	}
	set_nodelay(fd);
	c->c_bev[0] = bufferevent_socket_new(px.base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	c->c_bev[1] = bufferevent_socket_new(px.base, -1,
	    BEV_OPT_CLOSE_ON_FREE);
	if (c->c_bev[0] == NULL || c->c_bev[1] == NULL) {
		logx("bufferevent_socket_new failed");
		exit(FP_EXIT_FAIL);
	}
	for (i = 0; i < 2; i++) {
		bufferevent_setcb(c->c_bev[i], conn_read_cb, conn_write_cb,
		    conn_event_cb, c);
		bufferevent_enable(c->c_bev[i], EV_READ | EV_WRITE);
	}
	if (bufferevent_socket_connect(c->c_bev[1],
	    (struct sockaddr *)&px.target, px.target_len) == -1) {
		logx("conn %" PRIu64 ": connect to the target: %s", c->c_id,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		conn_free(c, 1, "no target");
		return;
	}
	set_nodelay(bufferevent_getfd(c->c_bev[1]));
}

static void
lst_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	evconnlistener_enable(px.lst);
}

/* Out of descriptors: stop accepting for a second rather than spin. */
static void
lst_error_cb(struct evconnlistener *l, void *arg)
{
	struct timeval one = { 1, 0 };

	(void)arg;
	logx("accept: %s",
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(l);
	evtimer_add(px.lst_pause, &one);
}

/* Applies a new mode to every connection. */
static void
set_mode(enum fp_mode mode, int reset)
{
	enum fp_mode old = px.mode;
	struct conn *c, *next;
	uint64_t now = now_us();
	int i;

	px.mode = mode;
	for (c = TAILQ_FIRST(&px.conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, c_entry);
		if (reset) {
			conn_free(c, 1, "reset");
			continue;
		}
		if (mode == M_REFUSE) {
			conn_free(c, 0, "refuse");
			continue;
		}
		if (old == M_BLACKHOLE && mode != M_BLACKHOLE &&
		    (c->c_bev[0] == NULL || c->c_bev[1] == NULL)) {
			conn_free(c, 1, "an end went away in the blackhole");
			continue;
		}
		for (i = 0; i < 2; i++) {
			struct dir *d = &c->c_dir[i];

			if (mode == M_BLACKHOLE) {
				dir_drop(d, 1);
				evtimer_del(d->d_timer);
			}
			d->d_tokens = 0;
			d->d_tok_at = now;
		}
		conn_settle(c);
	}
}

static int
parse_num(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = v;
	return 0;
}

/* One control line; the reply goes to out. */
static void
ctl_command(char *line, struct evbuffer *out)
{
	char *cmd, *arg, *extra, *save = NULL;
	uint64_t v;

	cmd = strtok_r(line, " \t\r", &save);
	arg = cmd != NULL ? strtok_r(NULL, " \t\r", &save) : NULL;
	extra = arg != NULL ? strtok_r(NULL, " \t\r", &save) : NULL;
	if (cmd == NULL) {
		evbuffer_add_printf(out, "error: empty command\n");
		return;
	}
	if (strcmp(cmd, "status") == 0 && arg == NULL) {
		evbuffer_add_printf(out, "mode=%s conns=%u bytes_up=%" PRIu64
		    " bytes_down=%" PRIu64 "\n", mode_name[px.mode],
		    px.nconns, px.bytes[0], px.bytes[1]);
		return;
	}
	if (strcmp(cmd, "delay") == 0 || strcmp(cmd, "rate") == 0) {
		int delay = cmd[0] == 'd';

		if (arg == NULL || extra != NULL || parse_num(arg,
		    delay ? FP_DELAY_MAX : FP_RATE_MAX, &v) == -1) {
			evbuffer_add_printf(out, "error: %s wants one number "
			    "from 0 to %" PRIu64 "\n", cmd, delay ?
			    (uint64_t)FP_DELAY_MAX : FP_RATE_MAX);
			return;
		}
		if (v == 0) {
			set_mode(M_PASS, 0);
		} else if (delay) {
			px.delay_us = v * 1000;
			set_mode(M_DELAY, 0);
		} else {
			px.rate = v;
			set_mode(M_RATE, 0);
		}
		logx("mode %s %" PRIu64, cmd, v);
		evbuffer_add_printf(out, "ok\n");
		return;
	}
	if (arg != NULL) {
		evbuffer_add_printf(out, "error: %s takes no argument\n", cmd);
		return;
	}
	if (strcmp(cmd, "pass") == 0)
		set_mode(M_PASS, 0);
	else if (strcmp(cmd, "blackhole") == 0)
		set_mode(M_BLACKHOLE, 0);
	else if (strcmp(cmd, "refuse") == 0)
		set_mode(M_REFUSE, 0);
	else if (strcmp(cmd, "reset") == 0)
		set_mode(M_PASS, 1);
	else {
		evbuffer_add_printf(out, "error: unknown command\n");
		return;
	}
	logx("mode %s", cmd);
	evbuffer_add_printf(out, "ok\n");
}

static void
ctl_free(struct ctlconn *cc)
{
	bufferevent_free(cc->cc_bev);
	free(cc);
}

/* Answers every whole line; with eof, the unterminated rest too. */
static void
ctl_lines(struct ctlconn *cc, int eof)
{
	struct evbuffer *in = bufferevent_get_input(cc->cc_bev);
	struct evbuffer *out = bufferevent_get_output(cc->cc_bev);
	char *line;
	size_t n, len;

	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF)) != NULL) {
		if (n > FP_LINE_MAX)
			evbuffer_add_printf(out, "error: line too long\n");
		else
			ctl_command(line, out);
		free(line);
	}
	len = evbuffer_get_length(in);
	if (len > FP_LINE_MAX) {
		evbuffer_add_printf(out, "error: line too long\n");
		cc->cc_closing = 1;
	} else if (eof && len > 0) {
		if ((line = calloc(1, len + 1)) == NULL) {
			logx("out of memory");
			exit(FP_EXIT_FAIL);
		}
		evbuffer_remove(in, line, len);
		ctl_command(line, out);
		free(line);
	}
	if (eof)
		cc->cc_closing = 1;
	if (cc->cc_closing) {
		bufferevent_disable(cc->cc_bev, EV_READ);
		if (evbuffer_get_length(out) == 0)
			ctl_free(cc);
	}
}

static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	ctl_lines(arg, 0);
}

static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctlconn *cc = arg;

	(void)bev;
	if (cc->cc_closing)
		ctl_free(cc);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & BEV_EVENT_ERROR)
		ctl_free(arg);
	else if (what & BEV_EVENT_EOF)
		ctl_lines(arg, 1);
}

static void
ctl_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct ctlconn *cc;

	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	if ((cc = calloc(1, sizeof(*cc))) == NULL ||
	    (cc->cc_bev = bufferevent_socket_new(px.base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		logx("out of memory");
		exit(FP_EXIT_FAIL);
	}
	bufferevent_setcb(cc->cc_bev, ctl_read_cb, ctl_write_cb, ctl_event_cb,
	    cc);
	bufferevent_enable(cc->cc_bev, EV_READ | EV_WRITE);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	logx("signal %d, exiting", (int)sig);
	event_base_loopbreak(px.base);
}

static void
usage(void)
{
	fprintf(stderr, "usage: duet-faultproxy -l HOST:PORT -t HOST:PORT "
	    "-c CTLSOCK [-v]\n");
	exit(FP_EXIT_USAGE);
}

/*
 * IP:PORT or [IP6]:PORT, strictly: evutil_parse_sockaddr_port() refuses
 * port 0 and takes "80x" for 80.
 */
static void
parse_addr(char opt, const char *s, int port_zero_ok,
    struct sockaddr_storage *ss, int *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':');
	uint64_t port;
	size_t hl;

	memset(ss, 0, sizeof(*ss));
	if (colon == NULL || (hl = (size_t)(colon - s)) >= sizeof(host) ||
	    parse_num(colon + 1, 65535, &port) == -1 ||
	    (port == 0 && !port_zero_ok))
		goto bad;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			goto bad;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
		return;
	}
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		goto bad;
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	*len = sizeof(*sin);
	return;
bad:
	fprintf(stderr, "duet-faultproxy: -%c %s: want IP:PORT or "
	    "[IP6]:PORT%s\n", opt, s, port_zero_ok ? "" : ", PORT not 0");
	exit(FP_EXIT_USAGE);
}

/* "listening ADDR:PORT", once everything is ready: tests wait for it. */
static void
print_listening(void)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (getsockname(evconnlistener_get_fd(px.lst), (struct sockaddr *)&ss,
	    &len) == -1) {
		logx("getsockname: %s", strerror(errno));
		exit(FP_EXIT_FAIL);
	}
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		printf("listening %s:%d\n", host, port);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		evutil_inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
		printf("listening [%s]:%d\n", host, port);
	}
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	struct sockaddr_storage lss;
	struct sockaddr_un sa_un;
	struct event *sigterm, *sigint;
	const char *laddr = NULL, *taddr = NULL;
	struct conn *c;
	mode_t um;
	int ch, llen;

	while ((ch = getopt(argc, argv, "l:t:c:v")) != -1) {
		switch (ch) {
		case 'l':
			laddr = optarg;
			break;
		case 't':
			taddr = optarg;
			break;
		case 'c':
			px.ctl_path = optarg;
			break;
		case 'v':
			px.verbose = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc) {
		fprintf(stderr, "duet-faultproxy: unexpected argument '%s'\n",
		    argv[optind]);
		usage();
	}
	if (laddr == NULL || taddr == NULL || px.ctl_path == NULL) {
		fprintf(stderr, "duet-faultproxy: %s is required\n",
		    laddr == NULL ? "-l" : taddr == NULL ? "-t" : "-c");
		usage();
	}
	parse_addr('l', laddr, 1, &lss, &llen);
	parse_addr('t', taddr, 0, &px.target, &px.target_len);
	memset(&sa_un, 0, sizeof(sa_un));
	sa_un.sun_family = AF_UNIX;
	if (px.ctl_path[0] == '\0' ||
	    strlen(px.ctl_path) >= sizeof(sa_un.sun_path)) {
		fprintf(stderr, "duet-faultproxy: -c: path empty or longer "
		    "than %zu bytes\n", sizeof(sa_un.sun_path) - 1);
		exit(FP_EXIT_USAGE);
	}
	strcpy(sa_un.sun_path, px.ctl_path);

	signal(SIGPIPE, SIG_IGN);
	TAILQ_INIT(&px.conns);
	if ((px.base = event_base_new()) == NULL) {
		logx("event_base_new failed");
		return FP_EXIT_FAIL;
	}

	/* A stale socket from a killed run would make bind fail. */
	if (unlink(px.ctl_path) == -1 && errno != ENOENT) {
		logx("-c %s: unlink: %s", px.ctl_path, strerror(errno));
		return FP_EXIT_FAIL;
	}
	um = umask(077);
	px.ctl = evconnlistener_new_bind(px.base, ctl_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
	    (struct sockaddr *)&sa_un, sizeof(sa_un));
	umask(um);
	if (px.ctl == NULL) {
		logx("-c %s: %s", px.ctl_path,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return FP_EXIT_FAIL;
	}

	px.lst = evconnlistener_new_bind(px.base, accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
	    -1, (struct sockaddr *)&lss, llen);
	if (px.lst == NULL) {
		logx("-l %s: %s", laddr,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		unlink(px.ctl_path);
		return FP_EXIT_FAIL;
	}
	evconnlistener_set_error_cb(px.lst, lst_error_cb);
	px.lst_pause = evtimer_new(px.base, lst_resume_cb, NULL);
	sigterm = evsignal_new(px.base, SIGTERM, signal_cb, NULL);
	sigint = evsignal_new(px.base, SIGINT, signal_cb, NULL);
	if (px.lst_pause == NULL || sigterm == NULL || sigint == NULL ||
	    evsignal_add(sigterm, NULL) == -1 ||
	    evsignal_add(sigint, NULL) == -1) {
		logx("cannot set up events");
		unlink(px.ctl_path);
		return FP_EXIT_FAIL;
	}

	print_listening();
	event_base_dispatch(px.base);

	while ((c = TAILQ_FIRST(&px.conns)) != NULL)
		conn_free(c, 0, "exiting");
	evconnlistener_free(px.lst);
	evconnlistener_free(px.ctl);
	unlink(px.ctl_path);
	event_free(px.lst_pause);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(px.base);
	return 0;
}
