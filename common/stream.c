/*
 * stream.c: see stream.h.
 *
 * Events: s_rev (EV_READ, persistent) is in the loop while input is
 * wanted; s_wev (EV_WRITE, persistent) only while the socket refuses more,
 * or a TCP connect is under way; s_tev is the read timeout. Work for later
 * in the same pass goes through s_flush and s_resume, fd-less events that
 * are only ever activated by hand (no syscall): libevent ignores
 * event_add() on an event that waits in the active queue, so the socket
 * events are never activated by hand.
 *
 * TLS: OpenSSL reads and writes the inner end of a BIO pair; the handlers
 * move ciphertext between the outer end (s_net) and the socket. One pump
 * does everything a pass can: socket to ring, handshake, decrypt, encrypt,
 * ring to socket, then the callbacks.
 *
 * Callbacks may free the stream: s_busy marks a handler on the stack, and
 * stream_free() then only marks it dead; the handler frees it on the way
 * out.
 *
 * Offload (stream_offload): a sender thread encrypts the output and
 * writes it to the socket. s_lock then serializes everything that touches
 * the SSL object, the BIO pair and the socket's write side, between the
 * sender and the loop's thread, which still reads and decrypts. The
 * sender first moves what is queued from s_out (locked: the loop's thread
 * appends) to s_send, its own, and encrypts from there: an append may
 * move the bytes left in s_out's last chain (libevent realigns it), so
 * they must not be read in place while the loop runs. Nothing
 * calls back while holding s_lock: an end found under it (on either
 * thread) is recorded and delivered by s_fail on the loop's thread. The
 * loop's thread wakes the sender at the end of a pass that queued output
 * only while the sender sleeps (s_idle): under load it keeps looking on
 * its own (DESIGN.md "Adaptive wake-ups").
 */
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <sys/eventfd.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "common/stream.h"
#include "common/util.h"

#define STREAM_RING	(256u << 10)	/* each direction of the BIO pair */
#define STREAM_RECORD	16384u		/* TLS maximum plaintext per record */
#define STREAM_NERR	8

enum phase {
	PH_PLAIN,
	PH_CONNECT,			/* TCP connect under way */
	PH_HANDSHAKE,
	PH_UP,				/* TLS established */
};

/* Event thread only (stream_loop's busy test). */
static uint64_t stream_nread;	/* successful socket reads, all streams */
static uint64_t stream_npolls;	/* stream_loop's non-blocking passes */
static uint64_t stream_window_ns;	/* stream_loop's poll window now */

struct stream {
	int		 s_fd;
	struct evbuffer	*s_in;
	struct evbuffer	*s_out;
	struct event	*s_rev;
	struct event	*s_wev;
	struct event	*s_tev;
	struct event	*s_flush;	/* write at the end of this pass */
	struct event	*s_resume;	/* TLS: decrypt what the ring holds */
	size_t		 s_in_max;
	size_t		 s_out_low;
	int		 s_reading;	/* the owner wants input */
	int		 s_rev_on;	/* s_rev is in the loop */
	int		 s_wev_on;	/* s_wev is in the loop */
	int		 s_blocked;	/* the socket took less than offered */
	int		 s_busy;	/* a handler is on the stack */
	int		 s_dead;	/* freed from a callback */
	enum phase	 s_phase;
	int		 s_conn_err;	/* a connect that failed at once */

	/* TLS */
	SSL		*s_ssl;
	BIO		*s_net;		/* our end of the pair */
	size_t		 s_wpend;	/* an SSL_write to repeat, its size */
	int		 s_eof;		/* the socket said EOF */
	int		 s_broken;	/* a socket error: nothing to linger for */
	unsigned long	 s_err[STREAM_NERR];
	unsigned	 s_nerr;
	unsigned	 s_errpos;

	struct timeval	 s_timeout;
	int		 s_has_timeout;
	uint64_t	 s_last_in;	/* now_ns() of the last bytes read */

	struct stream_cbs s_cbs;
	void		*s_arg;

	/* stream_offload */
	int		 s_off;		/* a sender thread writes */
	struct evbuffer	*s_send;	/* under s_lock: taken from s_out */
	int		 s_stop;	/* atomic: the sender makes a last pass */
	int		 s_idle;	/* atomic: the sender sleeps, wake it */
	int		 s_efd;		/* eventfd: the sender's wake-up */
	pthread_mutex_t	 s_lock;
	pthread_t	 s_thr;
	struct event	*s_fail;	/* an end found under s_lock */
	int		 s_failed;	/* under s_lock: an end was found */
	int		 s_ended;	/* loop's thread: an end was delivered */
	enum stream_end	 s_fail_what;
	int		 s_fail_err;
};

/* Whether this thread holds some stream's s_lock (callbacks wait). */
static __thread int stream_locked;

static int
again(int e)
{
	return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

/* ---- Lingering close ------------------------------------------------- */

/*
 * A socket closed with input still unread makes the kernel send a reset,
 * which throws away what is still queued to the peer: the last replies of
 * an NBD client, a mirror's last acks and goodbye. So a stream that ends
 * whole shuts its write side and reads (and drops) what still comes, until
 * the peer's EOF or LINGER_SECS, before the close. Event thread only.
 */
#define LINGER_SECS	2
#define LINGER_MAX	256	/* lingering sockets at most; more close now */
#define LINGER_READS	16	/* reads per wake-up: others' turn after */

struct lingering_fd {
	struct event	*l_ev;		/* EV_READ, not persistent */
	int		 l_fd;
	uint64_t	 l_end_ns;	/* now_ns() at LINGER_SECS */
	struct lingering_fd	*l_next;
	struct lingering_fd	*l_prev;
};

static struct lingering_fd *lingering;
static unsigned nlingering;

static void
linger_end(struct lingering_fd *l)
{
	if (l->l_prev != NULL)
		l->l_prev->l_next = l->l_next;
	else
		lingering = l->l_next;
	if (l->l_next != NULL)
		l->l_next->l_prev = l->l_prev;
	nlingering--;
	event_free(l->l_ev);
	close(l->l_fd);
	free(l);
}

/* Drops what the peer sent, LINGER_READS reads at most. Returns 1 while
 * more may come. */
static int
linger_drain(int fd)
{
	static char sink[65536];
	ssize_t n;
	int i;

	for (i = 0; i < LINGER_READS; i++)
		if ((n = read(fd, sink, sizeof(sink))) <= 0)
			return n < 0 && again(errno);
	return 1;
}

/* Waits for more until l_end_ns; 0, or -1 when the time is up. */
static int
linger_wait(struct lingering_fd *l)
{
	uint64_t now = now_ns(), left;
	struct timeval tv;

	if (now >= l->l_end_ns)
		return -1;
	left = l->l_end_ns - now;
	tv.tv_sec = (time_t)(left / 1000000000u);
	tv.tv_usec = (suseconds_t)(left % 1000000000u / 1000u);
	return event_add(l->l_ev, &tv);
}

static void
linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lingering_fd *l = arg;

	if ((what & EV_READ) && linger_drain(fd) && linger_wait(l) == 0)
		return;
	linger_end(l);
}

static void
linger_close(struct stream *s, struct event_base *base)
{
	struct lingering_fd *l;

	if (s->s_eof || s->s_broken || s->s_phase == PH_CONNECT ||
	    base == NULL || nlingering >= LINGER_MAX ||
	    shutdown(s->s_fd, SHUT_WR) != 0 ||
	    (l = calloc(1, sizeof(*l))) == NULL) {
		close(s->s_fd);
		return;
	}
	l->l_fd = s->s_fd;
	l->l_end_ns = now_ns() + LINGER_SECS * 1000000000ull;
	l->l_ev = event_new(base, s->s_fd, EV_READ, linger_cb, l);
	if (l->l_ev == NULL || linger_wait(l) != 0) {
		if (l->l_ev != NULL)
			event_free(l->l_ev);
		free(l);
		close(s->s_fd);
		return;
	}
	if ((l->l_next = lingering) != NULL)
		lingering->l_prev = l;
	lingering = l;
	nlingering++;
}

void
stream_linger_end_all(void)
{
	while (lingering != NULL) {
		(void)linger_drain(lingering->l_fd);
		linger_end(lingering);
	}
}

static void
stream_destroy(struct stream *s)
{
	struct event_base *base = s->s_rev != NULL ?
	    event_get_base(s->s_rev) : NULL;

	if (s->s_off) {
		uint64_t one = 1;

		/* The sender's last pass sends what is queued (a goodbye). */
		__atomic_store_n(&s->s_stop, 1, __ATOMIC_SEQ_CST);
		(void)!write(s->s_efd, &one, sizeof(one));
		VERIFY(pthread_join(s->s_thr, NULL) == 0);
		close(s->s_efd);
		event_free(s->s_fail);
		evbuffer_free(s->s_send);
		pthread_mutex_destroy(&s->s_lock);
	}
	if (s->s_rev != NULL)
		event_free(s->s_rev);
	if (s->s_wev != NULL)
		event_free(s->s_wev);
	if (s->s_tev != NULL)
		event_free(s->s_tev);
	if (s->s_flush != NULL)
		event_free(s->s_flush);
	if (s->s_resume != NULL)
		event_free(s->s_resume);
	if (s->s_in != NULL)
		evbuffer_free(s->s_in);
	if (s->s_out != NULL)
		evbuffer_free(s->s_out);
	if (s->s_ssl != NULL)
		SSL_free(s->s_ssl);
	if (s->s_net != NULL)
		BIO_free(s->s_net);
	if (s->s_fd != -1)
		linger_close(s, base);
	free(s);
}

/* Puts the events in or out of the loop as the state asks. */
static void
stream_arm(struct stream *s)
{
	int r, w;

	r = s->s_phase == PH_HANDSHAKE ||
	    ((s->s_phase == PH_PLAIN || s->s_phase == PH_UP) &&
	    s->s_reading && !s->s_eof);
	/* Offloaded, the sender waits for a full socket itself. */
	w = (s->s_phase == PH_CONNECT && s->s_conn_err == 0) ||
	    (!s->s_off && s->s_blocked);
	if (r != s->s_rev_on) {
		s->s_rev_on = r;
		if (r)
			event_add(s->s_rev, NULL);
		else
			event_del(s->s_rev);
	}
	if (w != s->s_wev_on) {
		s->s_wev_on = w;
		if (w)
			event_add(s->s_wev, NULL);
		else
			event_del(s->s_wev);
	}
}

/* Each returns whether s is still alive. */
static int
call_end(struct stream *s, enum stream_end what, int err)
{
	if (what == STREAM_READ_ERROR || what == STREAM_WRITE_ERROR ||
	    what == STREAM_CONNECT_ERROR)
		s->s_broken = 1;
	if (stream_locked) {
		/* Offloaded, under s_lock: s_fail delivers the first end. */
		if (!s->s_failed) {
			s->s_failed = 1;
			s->s_fail_what = what;
			s->s_fail_err = err;
			event_active(s->s_fail, EV_TIMEOUT, 0);
		}
		return 0;
	}
	if (s->s_off && what != STREAM_TIMEOUT) {
		/* One end per stream, whichever thread found it first; and
		 * the sender writes no more. */
		if (s->s_ended)
			return !s->s_dead;
		s->s_ended = 1;
		pthread_mutex_lock(&s->s_lock);
		s->s_failed = 1;
		pthread_mutex_unlock(&s->s_lock);
	}
	s->s_cbs.end(s, what, err, s->s_arg);
	return !s->s_dead;
}

static int
call_read(struct stream *s)
{
	s->s_cbs.read(s, s->s_arg);
	return !s->s_dead;
}

static int
call_drained(struct stream *s)
{
	if (s->s_cbs.drained != NULL &&
	    stream_output_pending(s) <= s->s_out_low)
		s->s_cbs.drained(s, s->s_arg);
	return !s->s_dead;
}

/* Leaves a handler: frees s if a callback freed it. */
static void
stream_leave(struct stream *s)
{
	if (--s->s_busy == 0 && s->s_dead)
		stream_destroy(s);
}

/*
 * Reserves up to want bytes at the end of buf in v (at most 2 vectors,
 * trimmed to want: evbuffer may offer more). Returns the vector count.
 */
static int
reserve(struct evbuffer *buf, size_t want, struct evbuffer_iovec *v,
    int nmax)
{
	size_t left;
	int nv, i;

	if ((nv = evbuffer_reserve_space(buf, (ev_ssize_t)want, v, nmax)) <= 0)
		return -1;
	for (i = 0, left = want; i < nv; i++) {
		v[i].iov_len = MIN(v[i].iov_len, left);
		left -= v[i].iov_len;
	}
	return nv;
}

/* Commits the first n bytes of a reservation. */
static void
commit(struct evbuffer *buf, struct evbuffer_iovec *v, int nv, size_t n)
{
	int i;

	for (i = 0; i < nv && n > 0; i++) {
		v[i].iov_len = MIN(v[i].iov_len, n);
		n -= v[i].iov_len;
	}
	VERIFY(evbuffer_commit_space(buf, v, i) == 0);
}

/* ---- plain ------------------------------------------------------------ */

static void
plain_read(struct stream *s)
{
	struct evbuffer_iovec v[2];
	size_t have = evbuffer_get_length(s->s_in);
	ssize_t n;
	int nv;

	if (have >= s->s_in_max) {
		stream_set_reading(s, 0);
		return;
	}
	nv = reserve(s->s_in, MIN(s->s_in_max - have, STREAM_READ_MAX), v, 2);
	if (nv < 0) {
		(void)call_end(s, STREAM_READ_ERROR, ENOMEM);
		return;
	}
	n = readv(s->s_fd, (struct iovec *)v, nv);
	if (n < 0 && again(errno))
		return;
	if (n <= 0) {
		(void)call_end(s, n == 0 ? STREAM_EOF : STREAM_READ_ERROR,
		    n == 0 ? 0 : errno);
		return;
	}
	commit(s->s_in, v, nv, (size_t)n);
	s->s_last_in = now_ns();
	stream_nread++;
	(void)call_read(s);
}

static void
plain_write(struct stream *s)
{
	int n;

	if (evbuffer_get_length(s->s_out) == 0) {
		s->s_blocked = 0;
		stream_arm(s);
		return;
	}
	if ((n = evbuffer_write(s->s_out, s->s_fd)) < 0) {
		s->s_blocked = again(errno);
		stream_arm(s);
		if (!s->s_blocked)
			(void)call_end(s, STREAM_WRITE_ERROR, errno);
		return;
	}
	s->s_blocked = evbuffer_get_length(s->s_out) > 0;
	stream_arm(s);
	(void)call_drained(s);
}

/* ---- TLS -------------------------------------------------------------- */

/* Saves the OpenSSL errors of this failure for stream_tls_error(). */
static void
tls_save_errors(struct stream *s)
{
	unsigned long e;

	while ((e = ERR_get_error()) != 0)
		if (s->s_nerr < STREAM_NERR)
			s->s_err[s->s_nerr++] = e;
}

/* Socket to ring. Returns 0, or -1 when s has ended. */
static int
tls_fill(struct stream *s)
{
	char *p;
	ssize_t n, r;
	int i;

	for (i = 0; i < 2 && !s->s_eof; i++) {	/* twice: the ring wraps */
		if ((n = BIO_nwrite0(s->s_net, &p)) <= 0)
			break;
		n = MIN(n, (ssize_t)STREAM_READ_MAX);
		if ((r = read(s->s_fd, p, (size_t)n)) < 0) {
			if (again(errno))
				break;
			(void)call_end(s, STREAM_READ_ERROR, errno);
			return -1;
		}
		if (r == 0) {
			s->s_eof = 1;
			break;
		}
		VERIFY(BIO_nwrite(s->s_net, &p, (int)r) == r);
		s->s_last_in = now_ns();
		stream_nread++;
		if (r < n)
			break;
	}
	return 0;
}

/*
 * Ring to socket. Returns 1 when something was sent, 0 when not, -1 when
 * s has ended.
 */
static int
tls_flush(struct stream *s)
{
	char *p;
	ssize_t n, w;
	int sent = 0;

	s->s_blocked = 0;
	while ((n = BIO_nread0(s->s_net, &p)) > 0) {
		if ((w = send(s->s_fd, p, (size_t)n, MSG_NOSIGNAL)) < 0) {
			if (again(errno)) {
				s->s_blocked = 1;
				break;
			}
			(void)call_end(s, STREAM_WRITE_ERROR, errno);
			return -1;
		}
		VERIFY(BIO_nread(s->s_net, &p, (int)w) == w);
		sent = 1;
		if (w < n) {
			s->s_blocked = 1;
			break;
		}
	}
	return sent;
}

/* A failed SSL call: tell the peer (the alert is in the ring), end. */
static void
tls_fail(struct stream *s)
{
	tls_save_errors(s);
	if (tls_flush(s) < 0)
		return;
	(void)call_end(s, STREAM_TLS_ERROR, 0);
}

/*
 * Decrypts into the input while the owner reads. Returns 1 when the peer
 * is done (close_notify, or EOF with no record left), 0 otherwise, -1 when
 * s has ended. *grew says whether input arrived.
 */
static int
tls_decrypt(struct stream *s, int *grew)
{
	struct evbuffer_iovec v[1];
	size_t have, n;
	int e;

	while (s->s_reading) {
		if ((have = evbuffer_get_length(s->s_in)) >= s->s_in_max)
			return 0;
		if (reserve(s->s_in, MIN(s->s_in_max - have, STREAM_RECORD), v,
		    1) < 0) {
			(void)call_end(s, STREAM_READ_ERROR, ENOMEM);
			return -1;
		}
		ERR_clear_error();
		if (SSL_read_ex(s->s_ssl, v[0].iov_base, v[0].iov_len, &n)) {
			commit(s->s_in, v, 1, n);
			*grew = 1;
			continue;
		}
		switch ((e = SSL_get_error(s->s_ssl, 0))) {
		case SSL_ERROR_WANT_READ:
			return s->s_eof;
		case SSL_ERROR_WANT_WRITE:
			return 0;
		case SSL_ERROR_ZERO_RETURN:
			return 1;
		default:
			tls_fail(s);
			return -1;
		}
	}
	return 0;
}

/*
 * Encrypts the output (offloaded: s_send) into the ring, sending when it
 * fills. Returns 0, or -1 when s has ended; *sent says whether anything
 * went to the socket.
 */
static int
tls_encrypt(struct stream *s, int *sent)
{
	struct evbuffer *src = s->s_off ? s->s_send : s->s_out;
	size_t len, n;
	int e, rc;

	while ((len = s->s_wpend) > 0 ||
	    (len = MIN(evbuffer_get_length(src), STREAM_RECORD)) > 0) {
		ERR_clear_error();
		/* A repeat must offer the same bytes: the output's head did
		 * not move, and SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER lets the
		 * pullup move. */
		if (SSL_write_ex(s->s_ssl, evbuffer_pullup(src,
		    (ev_ssize_t)len), len, &n)) {
			evbuffer_drain(src, n);
			s->s_wpend = 0;
			continue;
		}
		e = SSL_get_error(s->s_ssl, 0);
		if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
			tls_fail(s);
			return -1;
		}
		s->s_wpend = len;
		/* A full ring: send what it holds and go on if the socket
		 * took all of it. */
		if (e == SSL_ERROR_WANT_READ)
			break;
		if ((rc = tls_flush(s)) < 0)
			return -1;
		*sent |= rc;
		if (s->s_blocked)
			break;
	}
	return 0;
}

/* Offloaded: output was queued; wake the sender if it sleeps. */
static void
sender_kick(struct stream *s)
{
	uint64_t one = 1;

	if (__atomic_exchange_n(&s->s_idle, 0, __ATOMIC_SEQ_CST))
		(void)!write(s->s_efd, &one, sizeof(one));
}

/* Offloaded: read and decrypt; the sender writes. */
static void
tls_pump_offloaded(struct stream *s, int readable)
{
	int grew = 0, done = 0, rc = 0;
	size_t pending;

	pthread_mutex_lock(&s->s_lock);
	stream_locked = 1;
	if (readable)
		rc = tls_fill(s);
	if (rc == 0)
		done = tls_decrypt(s, &grew);
	/* What reading made OpenSSL write (an alert, a key update). */
	pending = BIO_ctrl_pending(s->s_net);
	stream_locked = 0;
	pthread_mutex_unlock(&s->s_lock);
	if (rc < 0 || done < 0)
		return;		/* s_fail delivers the end */
	if (pending > 0)
		sender_kick(s);
	stream_arm(s);
	if (grew && !call_read(s))
		return;
	if (done)
		(void)call_end(s, STREAM_EOF, 0);
}

static void
tls_pump(struct stream *s, int readable)
{
	int grew = 0, connected = 0, done = 0, sent = 0, rc, e;

	if (s->s_off) {
		tls_pump_offloaded(s, readable);
		return;
	}
	if (readable && tls_fill(s) < 0)
		return;
	if (s->s_phase == PH_HANDSHAKE) {
		ERR_clear_error();
		if ((rc = SSL_do_handshake(s->s_ssl)) == 1) {
			s->s_phase = PH_UP;
			connected = 1;
		} else if ((e = SSL_get_error(s->s_ssl, rc)) !=
		    SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			tls_fail(s);
			return;
		} else if (s->s_eof) {
			(void)call_end(s, STREAM_EOF, 0);
			return;
		}
	}
	if (s->s_phase == PH_UP) {
		if ((done = tls_decrypt(s, &grew)) < 0 ||
		    tls_encrypt(s, &sent) < 0)
			return;
	}
	if ((rc = tls_flush(s)) < 0)
		return;
	sent |= rc;
	stream_arm(s);
	if (connected && s->s_cbs.connected != NULL) {
		s->s_cbs.connected(s, s->s_arg);
		if (s->s_dead)
			return;
	}
	if (grew && !call_read(s))
		return;
	if (sent && !call_drained(s))
		return;
	if (done)
		(void)call_end(s, STREAM_EOF, 0);
}

static void
tls_connected(struct stream *s)
{
	socklen_t len = sizeof(int);
	int err = s->s_conn_err;

	if (err == 0 &&
	    getsockopt(s->s_fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0) {
		s->s_wev_on = 0;
		event_del(s->s_wev);
		(void)call_end(s, STREAM_CONNECT_ERROR, err);
		return;
	}
	s->s_phase = PH_HANDSHAKE;
	tls_pump(s, 0);
}

/* ---- event handlers ----------------------------------------------------- */

static void
stream_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;

	(void)fd; (void)what;
	s->s_busy++;
	if (s->s_ssl == NULL)
		plain_read(s);
	else
		tls_pump(s, 1);
	stream_leave(s);
}

static void
stream_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;

	(void)fd; (void)what;
	if (s->s_off) {
		sender_kick(s);
		return;
	}
	s->s_busy++;
	if (s->s_ssl == NULL)
		plain_write(s);
	else if (s->s_phase == PH_CONNECT)
		tls_connected(s);
	else
		tls_pump(s, 0);
	stream_leave(s);
}

static void
stream_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;
	uint64_t limit = (uint64_t)s->s_timeout.tv_sec * 1000000000u +
	    (uint64_t)s->s_timeout.tv_usec * 1000u, idle;
	struct timeval tv;

	(void)fd; (void)what;
	if ((idle = now_ns() - s->s_last_in) < limit) {
		tv.tv_sec = (time_t)((limit - idle) / 1000000000u);
		tv.tv_usec = (suseconds_t)((limit - idle) % 1000000000u / 1000);
		evtimer_add(s->s_tev, &tv);
		return;
	}
	s->s_busy++;
	(void)call_end(s, STREAM_TIMEOUT, 0);
	stream_leave(s);
}

/* Output was queued: write it once the current loop pass is done. */
static void
stream_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct stream *s = arg;

	(void)buf;
	/* Offloaded, s_blocked is the sender's (and it takes s_out's
	 * chains from its thread: n_added is 0 then). */
	if (info->n_added > 0 && (s->s_off || (!s->s_blocked &&
	    (s->s_phase == PH_PLAIN || s->s_phase == PH_UP))))
		event_active(s->s_flush, EV_WRITE, 0);
}

/* ---- setup -------------------------------------------------------------- */

static struct stream *
stream_make(struct event_base *base, int fd, SSL *ssl, enum phase ph,
    size_t in_max, size_t out_low, const struct stream_cbs *cbs, void *arg)
{
	struct stream *s;
	BIO *inner = NULL;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->s_fd = fd;
	s->s_ssl = ssl;
	s->s_phase = ph;
	s->s_in_max = in_max;
	s->s_out_low = out_low;
	s->s_cbs = *cbs;
	s->s_arg = arg;
	s->s_last_in = now_ns();
	s->s_in = evbuffer_new();
	s->s_out = evbuffer_new();
	s->s_rev = event_new(base, fd, EV_READ | EV_PERSIST, stream_read_cb,
	    s);
	s->s_wev = event_new(base, fd, EV_WRITE | EV_PERSIST, stream_write_cb,
	    s);
	s->s_tev = evtimer_new(base, stream_timeout_cb, s);
	s->s_flush = event_new(base, -1, 0, stream_write_cb, s);
	s->s_resume = event_new(base, -1, 0, stream_read_cb, s);
	if (s->s_in == NULL || s->s_out == NULL || s->s_rev == NULL ||
	    s->s_wev == NULL || s->s_tev == NULL || s->s_flush == NULL ||
	    s->s_resume == NULL ||
	    evbuffer_add_cb(s->s_out, stream_out_cb, s) == NULL)
		goto fail;
	if (ssl != NULL) {
		if (!BIO_new_bio_pair(&inner, STREAM_RING, &s->s_net,
		    STREAM_RING))
			goto fail;
		SSL_set_bio(ssl, inner, inner);
		SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	return s;
fail:
	s->s_fd = -1;		/* the caller's, on failure */
	s->s_ssl = NULL;
	stream_destroy(s);
	return NULL;
}

static int
set_nonblock(int fd)
{
	int fl;

	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -1;
	return 0;
}

struct stream *
stream_new(struct event_base *base, int fd, size_t in_max, size_t out_low,
    const struct stream_cbs *cbs, void *arg)
{
	if (set_nonblock(fd) != 0)
		return NULL;
	return stream_make(base, fd, NULL, PH_PLAIN, in_max, out_low, cbs,
	    arg);
}

struct stream *
stream_new_tls_accept(struct event_base *base, int fd, SSL *ssl,
    size_t in_max, size_t out_low, const struct stream_cbs *cbs, void *arg)
{
	struct stream *s;

	if (set_nonblock(fd) != 0 || (s = stream_make(base, fd, ssl,
	    PH_HANDSHAKE, in_max, out_low, cbs, arg)) == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_accept_state(ssl);
	stream_arm(s);
	return s;
}

struct stream *
stream_connect_tls(struct event_base *base, const struct sockaddr *addr,
    socklen_t addrlen, SSL *ssl, size_t in_max, size_t out_low,
    const struct stream_cbs *cbs, void *arg)
{
	struct stream *s;
	int fd, one = 1;

	fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		SSL_free(ssl);
		return NULL;
	}
	if ((s = stream_make(base, fd, ssl, PH_CONNECT, in_max, out_low, cbs,
	    arg)) == NULL) {
		SSL_free(ssl);
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	SSL_set_connect_state(ssl);
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Every outcome is reported from the loop, through end(). */
	if (connect(fd, addr, addrlen) != 0 && errno != EINPROGRESS) {
		s->s_conn_err = errno;
		event_active(s->s_flush, EV_WRITE, 0);
		return s;
	}
	stream_arm(s);
	return s;
}

/* The loop's thread: an end the sender (or a locked pump) found. */
static void
stream_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;

	(void)fd; (void)what;
	if (s->s_dead)
		return;		/* freed by its owner: no more callbacks */
	s->s_busy++;
	(void)call_end(s, s->s_fail_what, s->s_fail_err);
	stream_leave(s);
}

/*
 * The sender thread: encrypts everything queued and sends it, then sleeps
 * until kicked (or, with the socket full, until it drains). After an end
 * it only waits for stream_destroy.
 */
static void *
stream_sender(void *arg)
{
	struct stream *s = arg;
	struct pollfd pf[2];
	uint64_t v;
	int sent, stop, blocked, left;

	for (;;) {
		stop = __atomic_load_n(&s->s_stop, __ATOMIC_SEQ_CST);
		pthread_mutex_lock(&s->s_lock);
		stream_locked = 1;
		VERIFY(evbuffer_add_buffer(s->s_send, s->s_out) == 0);
		if (!s->s_failed && tls_encrypt(s, &sent) == 0)
			(void)tls_flush(s);
		blocked = s->s_blocked && !s->s_failed;
		/* Left when the ring filled while the socket was full, and
		 * the last flush then emptied the ring. */
		left = !s->s_failed && evbuffer_get_length(s->s_send) > 0;
		stream_locked = 0;
		pthread_mutex_unlock(&s->s_lock);
		if (stop)
			return NULL;
		/* Asleep from here for sender_kick; one more look first, for
		 * output queued before the flag was seen. */
		__atomic_store_n(&s->s_idle, 1, __ATOMIC_SEQ_CST);
		if (!blocked && (left || evbuffer_get_length(s->s_out) > 0) &&
		    __atomic_exchange_n(&s->s_idle, 0, __ATOMIC_SEQ_CST))
			continue;
		pf[0].fd = s->s_efd;
		pf[0].events = POLLIN;
		pf[1].fd = s->s_fd;
		pf[1].events = POLLOUT;
		if (poll(pf, blocked ? 2 : 1, -1) > 0 &&
		    (pf[0].revents & POLLIN))
			(void)!read(s->s_efd, &v, sizeof(v));
		__atomic_store_n(&s->s_idle, 0, __ATOMIC_SEQ_CST);
	}
}

int
stream_offload(struct stream *s)
{
	if (s->s_ssl == NULL || s->s_phase != PH_UP || s->s_off ||
	    s->s_cbs.drained != NULL) {
		errno = EINVAL;
		return -1;
	}
	if (evbuffer_enable_locking(s->s_out, NULL) != 0) {
		errno = ENOTSUP;	/* no evthread_use_pthreads() */
		return -1;
	}
	if ((s->s_efd = eventfd(0, EFD_CLOEXEC)) == -1)
		return -1;
	if ((s->s_fail = event_new(event_get_base(s->s_rev), -1, 0,
	    stream_fail_cb, s)) == NULL ||
	    (s->s_send = evbuffer_new()) == NULL) {
		if (s->s_fail != NULL)
			event_free(s->s_fail);
		close(s->s_efd);
		errno = ENOMEM;
		return -1;
	}
	VERIFY(pthread_mutex_init(&s->s_lock, NULL) == 0);
	s->s_off = 1;
	if ((errno = pthread_create(&s->s_thr, NULL, stream_sender, s)) != 0) {
		s->s_off = 0;
		pthread_mutex_destroy(&s->s_lock);
		event_free(s->s_fail);
		evbuffer_free(s->s_send);
		close(s->s_efd);
		return -1;
	}
	stream_arm(s);		/* EV_WRITE is the sender's now */
	return 0;
}

void
stream_free(struct stream *s)
{
	if (s->s_busy > 0) {
		/* A callback frees it: stop everything, free on the way out. */
		s->s_dead = 1;
		event_del(s->s_rev);
		event_del(s->s_wev);
		event_del(s->s_tev);
		event_del(s->s_flush);
		event_del(s->s_resume);
		if (s->s_off)
			event_del(s->s_fail);
		return;
	}
	stream_destroy(s);
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

size_t
stream_output_pending(struct stream *s)
{
	size_t n;

	if (!s->s_off)
		return evbuffer_get_length(s->s_out) +
		    (s->s_net != NULL ? BIO_ctrl_pending(s->s_net) : 0);
	pthread_mutex_lock(&s->s_lock);
	n = evbuffer_get_length(s->s_out) + evbuffer_get_length(s->s_send) +
	    BIO_ctrl_pending(s->s_net);
	pthread_mutex_unlock(&s->s_lock);
	return n;
}

void
stream_set_reading(struct stream *s, int on)
{
	on = !!on;
	if (on == s->s_reading)
		return;
	s->s_reading = on;
	if (on) {
		s->s_last_in = now_ns();
		if (s->s_has_timeout)
			evtimer_add(s->s_tev, &s->s_timeout);
		/* Records may wait in the ring already: the socket will not
		 * say so. */
		if (s->s_ssl != NULL && s->s_phase == PH_UP)
			event_active(s->s_resume, EV_READ, 0);
	} else {
		event_del(s->s_tev);
	}
	stream_arm(s);
}

int
stream_reading(const struct stream *s)
{
	return s->s_reading;
}

void
stream_set_timeout(struct stream *s, const struct timeval *tv)
{
	s->s_timeout = *tv;
	s->s_has_timeout = 1;
	s->s_last_in = now_ns();
	if (s->s_reading)
		evtimer_add(s->s_tev, &s->s_timeout);
}

SSL *
stream_ssl(struct stream *s)
{
	return s->s_ssl;
}

unsigned long
stream_tls_error(struct stream *s)
{
	return s->s_errpos < s->s_nerr ? s->s_err[s->s_errpos++] : 0;
}

void
stream_pollwin_init(struct stream_pollwin *pw, unsigned max_us)
{
	pw->pw_max_ns = (uint64_t)max_us * 1000u;
	pw->pw_ns = 0;
	pw->pw_spare = 1;
}

void
stream_pollwin_load(struct stream_pollwin *pw, double idle_cpus,
    double polled_cpus)
{
	pw->pw_spare = idle_cpus + polled_cpus >= STREAM_POLL_SPARE_CPUS;
}

uint64_t
stream_pollwin_ns(const struct stream_pollwin *pw)
{
	return pw->pw_spare ? pw->pw_ns : 0;
}

void
stream_pollwin_slept(struct stream_pollwin *pw, uint64_t idle_ns)
{
	if (idle_ns > pw->pw_max_ns) {
		/* Even the longest window would have been spent in vain. */
		pw->pw_ns /= 2;
		if (pw->pw_ns < STREAM_POLL_START_NS)
			pw->pw_ns = 0;
	} else if (pw->pw_ns < pw->pw_max_ns) {
		/* A longer window would have caught it. */
		pw->pw_ns = pw->pw_ns == 0 ? STREAM_POLL_START_NS :
		    pw->pw_ns * 2;
		if (pw->pw_ns > pw->pw_max_ns)
			pw->pw_ns = pw->pw_max_ns;
	}
}

/* The host's idle (with iowait) and total jiffies so far; 0, or -1 when
 * /proc/stat cannot be read. */
static int
host_jiffies(uint64_t *idle, uint64_t *total)
{
	unsigned long long v[8];
	char buf[256];
	ssize_t n;
	int fd, i;

	if ((fd = open("/proc/stat", O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* user nice system idle iowait irq softirq steal */
	if (sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
	    &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
		return -1;
	*idle = v[3] + v[4];
	for (*total = 0, i = 0; i < 8; i++)
		*total += v[i];
	return 0;
}

/* The loop's look at the host's CPU (stream_pollwin_load). */
struct loadwatch {
	uint64_t	lw_t0;		/* start of the interval (now_ns) */
	uint64_t	lw_idle, lw_total;	/* jiffies at lw_t0 */
	uint64_t	lw_polled;	/* ns spent polling in vain since */
	double		lw_ncpu;
	int		lw_ok;		/* /proc/stat is readable */
};

static void
loadwatch_init(struct loadwatch *lw)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	lw->lw_t0 = now_ns();
	lw->lw_polled = 0;
	lw->lw_ncpu = n > 0 ? (double)n : 1.0;
	lw->lw_ok = host_jiffies(&lw->lw_idle, &lw->lw_total) == 0;
}

/* Every STREAM_POLL_LOAD_NS, tells pw how much CPU the host had spare. */
static void
loadwatch_tick(struct loadwatch *lw, struct stream_pollwin *pw, uint64_t now)
{
	uint64_t idle, total, span = now - lw->lw_t0;

	if (!lw->lw_ok || span < STREAM_POLL_LOAD_NS)
		return;
	if (host_jiffies(&idle, &total) != 0) {
		lw->lw_ok = 0;
		stream_pollwin_load(pw, lw->lw_ncpu, 0);
		return;
	}
	/* iowait may run backwards (proc(5)): skip such an interval. */
	if (total > lw->lw_total && idle >= lw->lw_idle)
		stream_pollwin_load(pw, (double)(idle - lw->lw_idle) /
		    (double)(total - lw->lw_total) * lw->lw_ncpu,
		    (double)lw->lw_polled / (double)span);
	lw->lw_t0 = now;
	lw->lw_idle = idle;
	lw->lw_total = total;
	lw->lw_polled = 0;
}

void
stream_loop(struct event_base *base, unsigned poll_us)
{
	struct stream_pollwin pw;
	struct loadwatch lw;
	uint64_t t0, t1, t2, seen;

	if (poll_us == 0) {
		event_base_dispatch(base);
		return;
	}
	stream_pollwin_init(&pw, poll_us);
	loadwatch_init(&lw);
	for (;;) {
		t0 = t1 = now_ns();
		seen = stream_nread;
		while (t1 - t0 < stream_pollwin_ns(&pw)) {
			event_base_loop(base, EVLOOP_NONBLOCK);
			stream_npolls++;
			if (event_base_got_exit(base) ||
			    event_base_got_break(base))
				return;
			t2 = now_ns();
			if (stream_nread != seen) {	/* busy: look again */
				seen = stream_nread;
				t0 = t2;
			} else
				lw.lw_polled += t2 - t1;
			t1 = t2;
			loadwatch_tick(&lw, &pw, t1);
		}
		stream_window_ns = stream_pollwin_ns(&pw);
		event_base_loop(base, EVLOOP_ONCE);
		if (event_base_got_exit(base) || event_base_got_break(base))
			return;
		t1 = now_ns();
		/* Only input counts: timers and completions say nothing
		 * about when the next request comes. */
		if (stream_nread != seen)
			stream_pollwin_slept(&pw, t1 - t0);
		loadwatch_tick(&lw, &pw, t1);
	}
}

uint64_t
stream_loop_polls(void)
{
	return stream_npolls;
}

unsigned
stream_loop_window_us(void)
{
	return (unsigned)(stream_window_ns / 1000u);
}
