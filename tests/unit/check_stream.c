/*
 * check_stream.c: the data paths' byte stream (common/stream.c). Plain, on
 * a socketpair: bytes arrive whole and in order, big reads, output held
 * until the loop runs, a full socket, the input limit, EOF and a write to
 * a closed peer, the polling loop. TLS, both ends on loopback in one loop: both directions
 * at once, records held while the reader pauses, EOF after the data, a
 * plaintext peer, a refused connect, the read timeout.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>
#include <time.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/stream.h"
#include "common/util.h"

/* What one end of a stream saw, through its callbacks. */
struct end {
	struct stream	*s;
	int		 up;
	int		 ended;
	enum stream_end	 what;
	int		 err;
	size_t		 biggest;	/* largest input growth per callback */
	size_t		 last_len;
	size_t		 drained;
	size_t		 reads;		/* read callbacks */
};

static void
end_read(struct stream *s, void *arg)
{
	struct end *e = arg;
	size_t len = evbuffer_get_length(stream_input(s));

	e->reads++;
	if (len - e->last_len > e->biggest)
		e->biggest = len - e->last_len;
	e->last_len = len;
}

static void
end_drained(struct stream *s, void *arg)
{
	(void)s;
	((struct end *)arg)->drained++;
}

static void
end_up(struct stream *s, void *arg)
{
	(void)s;
	((struct end *)arg)->up = 1;
}

static pthread_t loop_thread;	/* the test's: where callbacks must run */
static int off_thread_callbacks;

static void
end_end(struct stream *s, enum stream_end what, int err, void *arg)
{
	struct end *e = arg;

	(void)s;
	if (!pthread_equal(pthread_self(), loop_thread))
		off_thread_callbacks++;
	e->ended++;
	e->what = what;
	e->err = err;
}

static const struct stream_cbs end_cbs = {
	.read = end_read, .drained = end_drained, .connected = end_up,
	.end = end_end,
};

/* stream_offload refuses a drained callback. */
static const struct stream_cbs off_cbs = {
	.read = end_read, .connected = end_up, .end = end_end,
};

/* Plain: a stream on one end of a socketpair, the other end blocking. */
struct fix {
	struct event_base *base;
	int		 peer;
	struct end	 e;
};

static struct fix F;

static void
fix_up(size_t in_max)
{
	int sv[2];

	memset(&F, 0, sizeof(F));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	F.base = event_base_new();
	ck_assert_ptr_nonnull(F.base);
	F.e.s = stream_new(F.base, sv[0], in_max, 1024, &end_cbs, &F.e);
	ck_assert_ptr_nonnull(F.e.s);
	F.peer = sv[1];
}

static void
fix_down(void)
{
	if (F.e.s != NULL)
		stream_free(F.e.s);
	if (F.peer != -1)
		close(F.peer);
	stream_linger_end_all();
	event_base_free(F.base);
}

static void
pattern(uint8_t *buf, size_t len, unsigned seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 7 + seed + i / 251);
}

/* Runs the loop until cond or 2000 passes with nothing to do. */
#define LOOP_UNTIL(cond) do {						\
	int idle_ = 0;							\
	while (!(cond) && idle_++ < 2000)				\
		event_base_loop(F.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);	\
	ck_assert_msg((cond), "loop ended without " #cond);		\
} while (0)

START_TEST(reads_in_big_chunks_and_in_order)
{
	size_t len = 200 * 1024, got;
	uint8_t *src = malloc(len), *dst = malloc(len);

	fix_up(1 << 20);
	pattern(src, len, 1);
	/* Fills the socket buffer before the loop looks at it. */
	ck_assert_int_eq(write(F.peer, src, len), (ssize_t)len);
	ck_assert_int_eq(stream_reading(F.e.s), 0);
	event_base_loop(F.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_uint_eq(F.e.reads, 0);		/* reading starts disabled */
	stream_set_reading(F.e.s, 1);
	LOOP_UNTIL(F.e.last_len == len);
	ck_assert_msg(F.e.biggest > 4096, "largest read %zu bytes: the 4 KiB "
	    "bufferevent limit", F.e.biggest);
	got = (size_t)evbuffer_remove(stream_input(F.e.s), dst, len);
	ck_assert_uint_eq(got, len);
	ck_assert_int_eq(memcmp(src, dst, len), 0);
	free(src);
	free(dst);
	fix_down();
}
END_TEST

START_TEST(output_waits_for_the_loop_then_goes_in_order)
{
	uint8_t a[100], b[5000], c[3], all[sizeof(a) + sizeof(b) + sizeof(c)];
	uint8_t got[sizeof(all)];
	int fl;

	fix_up(1 << 20);
	pattern(a, sizeof(a), 2);
	pattern(b, sizeof(b), 3);
	pattern(c, sizeof(c), 4);
	memcpy(all, a, sizeof(a));
	memcpy(all + sizeof(a), b, sizeof(b));
	memcpy(all + sizeof(a) + sizeof(b), c, sizeof(c));
	evbuffer_add(stream_output(F.e.s), a, sizeof(a));
	evbuffer_add(stream_output(F.e.s), b, sizeof(b));
	evbuffer_add(stream_output(F.e.s), c, sizeof(c));
	fl = fcntl(F.peer, F_GETFL);
	fcntl(F.peer, F_SETFL, fl | O_NONBLOCK);
	ck_assert_int_eq(read(F.peer, got, sizeof(got)), -1);	/* not yet */
	ck_assert_int_eq(errno, EAGAIN);
	event_base_loop(F.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	/* One pass wrote all three, in one piece. */
	ck_assert_int_eq(read(F.peer, got, sizeof(got)), (ssize_t)sizeof(all));
	ck_assert_int_eq(memcmp(got, all, sizeof(all)), 0);
	ck_assert_uint_eq(evbuffer_get_length(stream_output(F.e.s)), 0);
	ck_assert_uint_eq(F.e.drained, 1);
	fix_down();
}
END_TEST

/* More than the socket holds: written as the peer reads, all of it. */
START_TEST(full_socket_waits_and_loses_nothing)
{
	size_t len = 8u << 20, off = 0, n;
	uint8_t *src = malloc(len), *dst = malloc(len);
	ssize_t r;
	int fl;

	fix_up(1 << 20);
	pattern(src, len, 5);
	evbuffer_add(stream_output(F.e.s), src, len);
	fl = fcntl(F.peer, F_GETFL);
	fcntl(F.peer, F_SETFL, fl | O_NONBLOCK);
	while (off < len) {
		event_base_loop(F.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		n = len - off < 70000 ? len - off : 70000;
		if ((r = read(F.peer, dst + off, n)) > 0)
			off += (size_t)r;
		else
			ck_assert_int_eq(errno, EAGAIN);
	}
	ck_assert_int_eq(memcmp(src, dst, len), 0);
	LOOP_UNTIL(evbuffer_get_length(stream_output(F.e.s)) == 0);
	ck_assert_uint_ge(F.e.drained, 1);
	ck_assert_int_eq(F.e.ended, 0);
	free(src);
	free(dst);
	fix_down();
}
END_TEST

START_TEST(reading_stops_at_the_input_limit)
{
	uint8_t buf[64 * 1024];

	fix_up(10000);
	pattern(buf, sizeof(buf), 6);
	ck_assert_int_eq(write(F.peer, buf, sizeof(buf)),
	    (ssize_t)sizeof(buf));
	stream_set_reading(F.e.s, 1);
	LOOP_UNTIL(!stream_reading(F.e.s));
	ck_assert_uint_eq(evbuffer_get_length(stream_input(F.e.s)), 10000);
	/* The rest arrives once the reader drains and reads again. */
	evbuffer_drain(stream_input(F.e.s), 10000);
	F.e.last_len = 0;
	stream_set_reading(F.e.s, 1);
	LOOP_UNTIL(F.e.last_len == 10000);
	fix_down();
}
END_TEST

START_TEST(eof_ends_the_stream)
{
	fix_up(1 << 20);
	ck_assert_int_eq(write(F.peer, "abc", 3), 3);
	close(F.peer);
	F.peer = -1;
	stream_set_reading(F.e.s, 1);
	LOOP_UNTIL(F.e.ended == 1);
	ck_assert_int_eq(F.e.what, STREAM_EOF);
	/* What came before the EOF was delivered first. */
	ck_assert_uint_eq(evbuffer_get_length(stream_input(F.e.s)), 3);
	fix_down();
}
END_TEST

START_TEST(write_to_a_closed_peer_ends_with_its_errno)
{
	signal(SIGPIPE, SIG_IGN);
	fix_up(1 << 20);
	close(F.peer);
	F.peer = -1;
	evbuffer_add(stream_output(F.e.s), "abc", 3);
	LOOP_UNTIL(F.e.ended == 1);
	ck_assert_int_eq(F.e.what, STREAM_WRITE_ERROR);
	ck_assert_int_eq(F.e.err, EPIPE);
	fix_down();
}
END_TEST

/*
 * Freed with input unread, a stream sends what it queued, then EOF: not a
 * reset, which makes the peer lose what it had not read yet (on TCP the
 * kernel drops it; here the peer's next read fails). It drops what still
 * comes until the peer closes.
 */
START_TEST(free_with_input_unread_ends_in_eof_not_a_reset)
{
	uint8_t out[3000], got[sizeof(out) + 1], junk[4096];
	ssize_t n;
	size_t off = 0;

	signal(SIGPIPE, SIG_IGN);
	fix_up(1 << 20);
	pattern(out, sizeof(out), 7);
	memset(junk, 'j', sizeof(junk));
	ck_assert_int_eq(write(F.peer, junk, sizeof(junk)), sizeof(junk));
	evbuffer_add(stream_output(F.e.s), out, sizeof(out));
	LOOP_UNTIL(stream_output_pending(F.e.s) == 0);
	stream_free(F.e.s);
	F.e.s = NULL;
	while ((n = read(F.peer, got + off, sizeof(got) - off)) > 0)
		off += (size_t)n;
	ck_assert_msg(n == 0, "read after the data: %s", strerror(errno));
	ck_assert_uint_eq(off, sizeof(out));
	ck_assert_int_eq(memcmp(got, out, sizeof(out)), 0);
	/* Still open: what the peer sends now is read and dropped. */
	ck_assert_int_eq(write(F.peer, junk, sizeof(junk)), sizeof(junk));
	event_base_loop(F.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_int_eq(write(F.peer, junk, sizeof(junk)), sizeof(junk));
	/* The peer's close ends it. */
	close(F.peer);
	F.peer = -1;
	event_base_loop(F.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	fix_down();
}
END_TEST

/* A peer that keeps sending after the free is cut off 2 s after it. */
START_TEST(linger_ends_after_two_seconds_whatever_comes)
{
	char junk[1000];
	uint64_t t0;
	ssize_t n = 0;

	signal(SIGPIPE, SIG_IGN);
	fix_up(1 << 20);
	memset(junk, 'j', sizeof(junk));
	ck_assert_int_eq(write(F.peer, junk, sizeof(junk)), sizeof(junk));
	stream_free(F.e.s);
	F.e.s = NULL;
	t0 = now_ns();
	while (now_ns() - t0 < 4000000000ull) {
		event_base_loop(F.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		if ((n = write(F.peer, junk, sizeof(junk))) < 0)
			break;
		usleep(20000);
	}
	ck_assert_msg(n < 0 && errno == EPIPE, "still open after 4 s");
	ck_assert_uint_ge(now_ns() - t0, 1900000000ull);
	fix_down();
}
END_TEST

static void
exit_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what;
	event_base_loopexit(arg, NULL);
}

/*
 * stream_loop: input, then polling (non-blocking passes, counted) until
 * the poll time passes with no more input, then a sleep that a timer ends
 * with loopexit; with 0 it never polls.
 */
START_TEST(loop_polls_after_input_and_stops_on_exit)
{
	struct timeval tv = { 0, 100000 };
	struct event *t;
	uint64_t p0, t0;

	fix_up(1 << 20);
	t = evtimer_new(F.base, exit_cb, F.base);
	stream_set_reading(F.e.s, 1);
	ck_assert_int_eq(write(F.peer, "abc", 3), 3);
	evtimer_add(t, &tv);
	p0 = stream_loop_polls();
	t0 = now_ns();
	stream_loop(F.base, 1000);
	ck_assert_uint_ge(now_ns() - t0, 90000000u);	/* the timer ended it */
	ck_assert_uint_eq(F.e.last_len, 3);
	ck_assert_uint_gt(stream_loop_polls(), p0);

	ck_assert_int_eq(write(F.peer, "de", 2), 2);
	evtimer_add(t, &tv);
	p0 = stream_loop_polls();
	stream_loop(F.base, 0);
	ck_assert_uint_eq(F.e.last_len, 5);
	ck_assert_uint_eq(stream_loop_polls(), p0);
	event_free(t);
	fix_down();
}
END_TEST

/*
 * The poll window: it grows, doubling, while the input that woke the loop
 * came soon enough for a window of the maximum to catch it, up to that
 * maximum; it halves to nothing while the input comes later; it is 0 in
 * effect while the host has less than half a CPU to spare, counting what
 * the loop polled in vain as spare; 0 never polls.
 */
START_TEST(poll_window_grows_for_near_input_and_shrinks_for_far)
{
	static const uint64_t grow[] = { 10, 20, 40, 80, 160, 200, 200 };
	static const uint64_t shrink[] = { 100, 50, 25, 12, 0, 0 };
	struct stream_pollwin pw;
	size_t i;

	stream_pollwin_init(&pw, 200);
	ck_assert_uint_eq(pw.pw_ns, 0);
	for (i = 0; i < sizeof(grow) / sizeof(grow[0]); i++) {
		stream_pollwin_slept(&pw, 150000);	/* inside 200 us */
		ck_assert_uint_eq(pw.pw_ns / 1000, grow[i]);
	}
	stream_pollwin_slept(&pw, 200000);	/* exactly the maximum */
	ck_assert_uint_eq(pw.pw_ns, 200000);
	ck_assert_uint_eq(stream_pollwin_ns(&pw), 200000);

	stream_pollwin_load(&pw, 0.2, 0.2);	/* 0.4 CPUs spare */
	ck_assert_uint_eq(stream_pollwin_ns(&pw), 0);
	stream_pollwin_slept(&pw, 150000);	/* still adapts meanwhile */
	ck_assert_uint_eq(pw.pw_ns, 200000);
	stream_pollwin_load(&pw, 0.1, 0.4);	/* 0.5: enough */
	ck_assert_uint_eq(stream_pollwin_ns(&pw), 200000);
	stream_pollwin_load(&pw, 1.5, 0);
	ck_assert_uint_eq(stream_pollwin_ns(&pw), 200000);
	for (i = 0; i < sizeof(shrink) / sizeof(shrink[0]); i++) {
		stream_pollwin_slept(&pw, 200001);
		ck_assert_uint_eq(pw.pw_ns / 1000, shrink[i]);
	}

	stream_pollwin_init(&pw, 0);
	stream_pollwin_slept(&pw, 0);
	stream_pollwin_slept(&pw, 5000);
	ck_assert_uint_eq(pw.pw_ns, 0);
}
END_TEST

/* ---- TLS ------------------------------------------------------------- */

/*
 * Both ends in one loop: a listener on loopback, the server end made by
 * stream_new_tls_accept, the client by stream_connect_tls. The server has
 * a self-signed key made here; the client does not verify it (tls.c's
 * checks have their own suite, check_tls).
 */
static struct {
	struct event_base *base;
	SSL_CTX		*sctx, *cctx;
	int		 lfd;
	struct sockaddr_in addr;
	struct end	 srv, cli;
} T;

static SSL_CTX *
server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *n;

	ck_assert_ptr_nonnull(ctx);
	ck_assert_ptr_nonnull(key);
	ck_assert_ptr_nonnull(x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"stream-test", -1, -1, 0);
	X509_set_issuer_name(x, n);
	ck_assert_int_gt(X509_sign(x, key, EVP_sha256()), 0);
	ck_assert_int_eq(SSL_CTX_use_certificate(ctx, x), 1);
	ck_assert_int_eq(SSL_CTX_use_PrivateKey(ctx, key), 1);
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	X509_free(x);
	EVP_PKEY_free(key);
	return ctx;
}

static void
tls_up_fix(void)
{
	socklen_t len = sizeof(T.addr);

	memset(&T, 0, sizeof(T));
	signal(SIGPIPE, SIG_IGN);
	T.base = event_base_new();
	T.sctx = server_ctx();
	T.cctx = SSL_CTX_new(TLS_client_method());
	ck_assert_ptr_nonnull(T.cctx);
	SSL_CTX_set_verify(T.cctx, SSL_VERIFY_NONE, NULL);
	T.lfd = socket(AF_INET, SOCK_STREAM, 0);
	T.addr.sin_family = AF_INET;
	T.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(T.lfd, (struct sockaddr *)&T.addr,
	    sizeof(T.addr)), 0);
	ck_assert_int_eq(listen(T.lfd, 4), 0);
	ck_assert_int_eq(getsockname(T.lfd, (struct sockaddr *)&T.addr, &len),
	    0);
}

/* Connects a client and accepts it; neither end reads yet. */
static void
tls_pair(void)
{
	int fd;

	T.cli.s = stream_connect_tls(T.base, (struct sockaddr *)&T.addr,
	    sizeof(T.addr), SSL_new(T.cctx), 1 << 20, 0, &end_cbs, &T.cli);
	ck_assert_ptr_nonnull(T.cli.s);
	ck_assert_int_ge(fd = accept(T.lfd, NULL, NULL), 0);
	T.srv.s = stream_new_tls_accept(T.base, fd, SSL_new(T.sctx),
	    8 << 20, 0, &end_cbs, &T.srv);
	ck_assert_ptr_nonnull(T.srv.s);
}

static void
tls_down_fix(void)
{
	if (T.cli.s != NULL)
		stream_free(T.cli.s);
	if (T.srv.s != NULL)
		stream_free(T.srv.s);
	close(T.lfd);
	SSL_CTX_free(T.sctx);
	SSL_CTX_free(T.cctx);
	stream_linger_end_all();
	event_base_free(T.base);
}

#define TLOOP_UNTIL(cond) do {						\
	int idle_ = 0;							\
	while (!(cond) && idle_++ < 20000)				\
		event_base_loop(T.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);	\
	ck_assert_msg((cond), "loop ended without " #cond);		\
} while (0)

START_TEST(tls_both_ways_whole_and_in_order)
{
	size_t up = 3u << 20, down = 1u << 20;
	uint8_t *a = malloc(up), *b = malloc(down), *got = malloc(up);

	tls_up_fix();
	tls_pair();
	pattern(a, up, 7);
	pattern(b, down, 8);
	stream_set_reading(T.cli.s, 1);
	stream_set_reading(T.srv.s, 1);
	/* Queued before the handshake: sent once it is done. */
	evbuffer_add(stream_output(T.cli.s), a, up);
	TLOOP_UNTIL(T.srv.up && T.cli.up);
	evbuffer_add(stream_output(T.srv.s), b, down);
	TLOOP_UNTIL(T.srv.last_len == up && T.cli.last_len == down);
	ck_assert_int_eq(evbuffer_remove(stream_input(T.srv.s), got, up),
	    (int)up);
	ck_assert_int_eq(memcmp(got, a, up), 0);
	ck_assert_int_eq(evbuffer_remove(stream_input(T.cli.s), got, down),
	    (int)down);
	ck_assert_int_eq(memcmp(got, b, down), 0);
	/* Many records per callback, not one. */
	ck_assert_msg(T.srv.biggest > 16384, "largest input growth %zu",
	    T.srv.biggest);
	ck_assert_uint_ge(T.cli.drained, 1);
	ck_assert_uint_eq(stream_output_pending(T.cli.s), 0);
	ck_assert_int_eq(T.srv.ended + T.cli.ended, 0);
	free(a);
	free(b);
	free(got);
	tls_down_fix();
}
END_TEST

/*
 * Records that arrived while the reader was paused sit in the stream, not
 * in the socket: enabling reading must deliver them with nothing more
 * coming from the peer.
 */
START_TEST(tls_paused_reader_gets_what_was_held)
{
	size_t len = 100000;
	uint8_t *a = malloc(len), *got = malloc(len);

	tls_up_fix();
	tls_pair();
	pattern(a, len, 9);
	stream_set_reading(T.cli.s, 1);
	stream_set_reading(T.srv.s, 1);
	TLOOP_UNTIL(T.srv.up && T.cli.up);
	stream_set_reading(T.srv.s, 0);
	evbuffer_add(stream_output(T.cli.s), a, len);
	TLOOP_UNTIL(T.cli.drained > 0 &&
	    stream_output_pending(T.cli.s) == 0);
	/* Let the server's socket hand over what it has, unread. */
	TLOOP_UNTIL(T.srv.last_len == 0 && T.srv.ended == 0);
	stream_set_reading(T.srv.s, 1);
	TLOOP_UNTIL(T.srv.last_len == len);
	ck_assert_int_eq(evbuffer_remove(stream_input(T.srv.s), got, len),
	    (int)len);
	ck_assert_int_eq(memcmp(got, a, len), 0);
	free(a);
	free(got);
	tls_down_fix();
}
END_TEST

START_TEST(tls_peer_close_ends_after_the_data)
{
	tls_up_fix();
	tls_pair();
	stream_set_reading(T.cli.s, 1);
	stream_set_reading(T.srv.s, 1);
	TLOOP_UNTIL(T.srv.up && T.cli.up);
	evbuffer_add(stream_output(T.cli.s), "last words", 10);
	TLOOP_UNTIL(stream_output_pending(T.cli.s) == 0 && T.cli.drained);
	stream_free(T.cli.s);
	T.cli.s = NULL;
	TLOOP_UNTIL(T.srv.ended == 1);
	ck_assert_int_eq(T.srv.what, STREAM_EOF);
	ck_assert_uint_eq(evbuffer_get_length(stream_input(T.srv.s)), 10);
	tls_down_fix();
}
END_TEST

START_TEST(tls_plaintext_peer_is_a_tls_error)
{
	const char junk[] = "GET / HTTP/1.0\r\n\r\n";
	char msg[256];
	unsigned long e;
	int cfd, fd;

	tls_up_fix();
	cfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(cfd, (struct sockaddr *)&T.addr,
	    sizeof(T.addr)), 0);
	ck_assert_int_ge(fd = accept(T.lfd, NULL, NULL), 0);
	T.srv.s = stream_new_tls_accept(T.base, fd, SSL_new(T.sctx), 1 << 20,
	    0, &end_cbs, &T.srv);
	ck_assert_int_eq(write(cfd, junk, sizeof(junk) - 1),
	    (ssize_t)sizeof(junk) - 1);
	TLOOP_UNTIL(T.srv.ended == 1);
	ck_assert_int_eq(T.srv.what, STREAM_TLS_ERROR);
	ck_assert_int_eq(T.srv.up, 0);
	e = stream_tls_error(T.srv.s);
	ck_assert_uint_ne(e, 0);
	ERR_error_string_n(e, msg, sizeof(msg));
	ck_assert_msg(strstr(msg, "SSL routines") != NULL, "error: %s", msg);
	close(cfd);
	tls_down_fix();
}
END_TEST

START_TEST(tls_refused_connect_ends_with_its_errno)
{
	tls_up_fix();
	close(T.lfd);		/* nothing listens on the port now */
	T.lfd = socket(AF_INET, SOCK_STREAM, 0);
	T.cli.s = stream_connect_tls(T.base, (struct sockaddr *)&T.addr,
	    sizeof(T.addr), SSL_new(T.cctx), 1 << 20, 0, &end_cbs, &T.cli);
	ck_assert_ptr_nonnull(T.cli.s);
	stream_set_reading(T.cli.s, 1);
	TLOOP_UNTIL(T.cli.ended == 1);
	ck_assert_int_eq(T.cli.what, STREAM_CONNECT_ERROR);
	ck_assert_int_eq(T.cli.err, ECONNREFUSED);
	ck_assert_int_eq(T.cli.up, 0);
	tls_down_fix();
}
END_TEST

START_TEST(tls_silence_times_out)
{
	struct timeval tv = { 0, 200000 };
	uint64_t t0;

	tls_up_fix();
	tls_pair();
	stream_set_reading(T.cli.s, 1);
	stream_set_reading(T.srv.s, 1);
	TLOOP_UNTIL(T.srv.up && T.cli.up);
	stream_set_timeout(T.srv.s, &tv);
	t0 = now_ns();
	while (T.srv.ended == 0 && now_ns() - t0 < 5000000000ull)
		event_base_loop(T.base, EVLOOP_ONCE);
	ck_assert_int_eq(T.srv.ended, 1);
	ck_assert_int_eq(T.srv.what, STREAM_TIMEOUT);
	ck_assert_uint_ge(now_ns() - t0, 190000000ull);
	tls_down_fix();
}
END_TEST

/* Offloaded streams: the loop runs while the sender works, for 10 s. */
#define OLOOP_UNTIL(cond) do {						\
	struct timespec t0_, t_;					\
	clock_gettime(CLOCK_MONOTONIC, &t0_);				\
	for (;;) {							\
		event_base_loop(T.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);	\
		if (cond)						\
			break;						\
		clock_gettime(CLOCK_MONOTONIC, &t_);			\
		ck_assert_msg(t_.tv_sec - t0_.tv_sec < 10,		\
		    "10 s without " #cond);				\
		usleep(50);						\
	}								\
} while (0)

/* A client with the offload callbacks, connected; both ends read. */
static void
tls_pair_up_offloaded(void)
{
	int fd;

	T.cli.s = stream_connect_tls(T.base, (struct sockaddr *)&T.addr,
	    sizeof(T.addr), SSL_new(T.cctx), 1 << 20, 0, &off_cbs, &T.cli);
	ck_assert_ptr_nonnull(T.cli.s);
	ck_assert_int_ge(fd = accept(T.lfd, NULL, NULL), 0);
	T.srv.s = stream_new_tls_accept(T.base, fd, SSL_new(T.sctx),
	    16 << 20, 0, &end_cbs, &T.srv);
	ck_assert_ptr_nonnull(T.srv.s);
	stream_set_reading(T.cli.s, 1);
	stream_set_reading(T.srv.s, 1);
	/* Not before the handshake. */
	ck_assert_int_eq(stream_offload(T.cli.s), -1);
	ck_assert_int_eq(errno, EINVAL);
	TLOOP_UNTIL(T.srv.up && T.cli.up);
	ck_assert_int_eq(stream_offload(T.cli.s), 0);
	ck_assert_int_eq(stream_offload(T.cli.s), -1);	/* once */
}

/*
 * Frames of every size queued over many passes while the peer talks back:
 * the sender encrypts and sends while the loop decrypts, and both
 * directions arrive whole and in order.
 */
START_TEST(tls_offloaded_both_ways_whole_and_in_order)
{
	size_t up = 6u << 20, down = 1u << 20, off = 0, n;
	uint8_t *a = malloc(up), *b = malloc(down), *got = malloc(up);
	unsigned r = 1;

	tls_up_fix();
	tls_pair_up_offloaded();
	pattern(a, up, 11);
	pattern(b, down, 12);
	evbuffer_add(stream_output(T.srv.s), b, down);
	while (off < up) {
		for (int i = 0; i < 32 && off < up; i++) {
			r = r * 1103515245 + 12345;
			n = MIN(up - off, 1 + (r >> 8) % 70000);
			evbuffer_add(stream_output(T.cli.s), a + off, n);
			off += n;
		}
		event_base_loop(T.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	}
	OLOOP_UNTIL(T.srv.last_len == up && T.cli.last_len == down);
	ck_assert_int_eq(evbuffer_remove(stream_input(T.srv.s), got, up),
	    (int)up);
	ck_assert_int_eq(memcmp(got, a, up), 0);
	ck_assert_int_eq(evbuffer_remove(stream_input(T.cli.s), got, down),
	    (int)down);
	ck_assert_int_eq(memcmp(got, b, down), 0);
	OLOOP_UNTIL(stream_output_pending(T.cli.s) == 0);
	ck_assert_int_eq(T.srv.ended + T.cli.ended, 0);
	free(a);
	free(b);
	free(got);
	tls_down_fix();
}
END_TEST

/*
 * Small frames queued one at a time, so that the sender is often
 * encrypting the last bytes of the output's only chain while the loop
 * appends the next frame. libevent may then move those bytes to the
 * chain's start (evbuffer_add's realign): the sender must not be reading
 * them in place.
 */
START_TEST(tls_offloaded_appends_while_the_sender_encrypts)
{
	size_t up = 64u << 20, off = 0, seen = 0, n;
	uint8_t *a = malloc(up), *got = malloc(up);
	unsigned r = 7;

	tls_up_fix();
	tls_pair_up_offloaded();
	pattern(a, up, 13);
	while (seen < up) {
		if (off < up) {
			r = r * 1103515245 + 12345;
			n = MIN(up - off, 1 + (r >> 8) % 1024);
			evbuffer_add(stream_output(T.cli.s), a + off, n);
			off += n;
		}
		if (off == up || (r >> 4) % 8 == 0)	/* a pass per 8 */
			event_base_loop(T.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		/* What arrived so far, checked and taken (the input is
		 * bounded). */
		n = evbuffer_remove(stream_input(T.srv.s), got + seen,
		    up - seen);
		T.srv.last_len = 0;
		for (size_t i = seen; i < seen + n; i++)
			if (got[i] != a[i])
				ck_abort_msg("byte %zu of %zu differs", i, up);
		seen += n;
		ck_assert_int_eq(T.srv.ended + T.cli.ended, 0);
	}
	free(a);
	free(got);
	tls_down_fix();
}
END_TEST

/* Only an established TLS stream without a drained callback. */
START_TEST(offload_refuses_other_streams)
{
	fix_up(1 << 20);
	ck_assert_int_eq(stream_offload(F.e.s), -1);	/* plain */
	ck_assert_int_eq(errno, EINVAL);
	fix_down();
	tls_up_fix();
	tls_pair();
	stream_set_reading(T.cli.s, 1);
	stream_set_reading(T.srv.s, 1);
	TLOOP_UNTIL(T.srv.up && T.cli.up);
	ck_assert_int_eq(stream_offload(T.cli.s), -1);	/* end_cbs.drained */
	ck_assert_int_eq(errno, EINVAL);
	tls_down_fix();
}
END_TEST

/*
 * The peer goes away while the sender writes: the end comes once, on the
 * loop's thread.
 */
START_TEST(tls_offloaded_end_comes_once_on_the_loop_thread)
{
	size_t len = 4u << 20;
	uint8_t *a = malloc(len);

	tls_up_fix();
	tls_pair_up_offloaded();
	pattern(a, len, 13);
	stream_free(T.srv.s);
	T.srv.s = NULL;
	for (int i = 0; i < 8 && T.cli.ended == 0; i++) {
		evbuffer_add(stream_output(T.cli.s), a, len);
		event_base_loop(T.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	}
	OLOOP_UNTIL(T.cli.ended > 0);
	ck_assert_msg(T.cli.what == STREAM_WRITE_ERROR ||
	    T.cli.what == STREAM_EOF || T.cli.what == STREAM_READ_ERROR,
	    "end %d", T.cli.what);
	/* Nothing more: the sender stops writing after an end. */
	for (int i = 0; i < 100; i++) {
		evbuffer_add(stream_output(T.cli.s), a, 4096);
		event_base_loop(T.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(100);
	}
	ck_assert_int_eq(T.cli.ended, 1);
	ck_assert_int_eq(off_thread_callbacks, 0);
	free(a);
	tls_down_fix();
}
END_TEST

/* Freed with output queued and the sender busy: it stops and is joined. */
START_TEST(tls_offloaded_free_while_sending)
{
	size_t len = 16u << 20;
	uint8_t *a = malloc(len);

	tls_up_fix();
	tls_pair_up_offloaded();
	pattern(a, len, 14);
	stream_set_reading(T.srv.s, 0);	/* so the socket fills */
	evbuffer_add(stream_output(T.cli.s), a, len);
	event_base_loop(T.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	usleep(2000);
	stream_free(T.cli.s);
	T.cli.s = NULL;
	ck_assert_int_eq(off_thread_callbacks, 0);
	free(a);
	tls_down_fix();
}
END_TEST

static Suite *
stream_suite(void)
{
	Suite *s = suite_create("stream");
	TCase *tc = tcase_create("Core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, reads_in_big_chunks_and_in_order);
	tcase_add_test(tc, output_waits_for_the_loop_then_goes_in_order);
	tcase_add_test(tc, full_socket_waits_and_loses_nothing);
	tcase_add_test(tc, reading_stops_at_the_input_limit);
	tcase_add_test(tc, eof_ends_the_stream);
	tcase_add_test(tc, write_to_a_closed_peer_ends_with_its_errno);
	tcase_add_test(tc, free_with_input_unread_ends_in_eof_not_a_reset);
	tcase_add_test(tc, linger_ends_after_two_seconds_whatever_comes);
	tcase_add_test(tc, loop_polls_after_input_and_stops_on_exit);
	tcase_add_test(tc, poll_window_grows_for_near_input_and_shrinks_for_far);
	suite_add_tcase(s, tc);

	tc = tcase_create("TLS");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, tls_both_ways_whole_and_in_order);
	tcase_add_test(tc, tls_paused_reader_gets_what_was_held);
	tcase_add_test(tc, tls_peer_close_ends_after_the_data);
	tcase_add_test(tc, tls_plaintext_peer_is_a_tls_error);
	tcase_add_test(tc, tls_refused_connect_ends_with_its_errno);
	tcase_add_test(tc, tls_silence_times_out);
	tcase_add_test(tc, tls_offloaded_both_ways_whole_and_in_order);
	tcase_add_test(tc, tls_offloaded_appends_while_the_sender_encrypts);
	tcase_add_test(tc, offload_refuses_other_streams);
	tcase_add_test(tc, tls_offloaded_end_comes_once_on_the_loop_thread);
	tcase_add_test(tc, tls_offloaded_free_while_sending);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(stream_suite());
	int failed;

	/* stream_offload's sender wakes the loop from its thread. */
	evthread_use_pthreads();
	loop_thread = pthread_self();
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
