/*
 * check_stream.c: the NBD connection's byte stream (common/stream.c) on a
 * socketpair: bytes arrive whole and in order both ways, big reads, output
 * held until the loop runs, a full socket, the input limit, EOF and a
 * write to a closed peer.
 */
#include <sys/socket.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/stream.h"

struct fix {
	struct event_base *base;
	struct stream	*s;
	int		 peer;		/* the other end, blocking */
	size_t		 reads;		/* read callbacks */
	size_t		 biggest;	/* largest input growth seen */
	size_t		 last_len;
	size_t		 drained;	/* drained callbacks */
	int		 ended;
	enum stream_end	 end_what;
	int		 end_err;
};

static struct fix F;

static void
on_read(struct stream *s, void *arg)
{
	struct fix *f = arg;
	size_t len = evbuffer_get_length(stream_input(s));

	f->reads++;
	if (len - f->last_len > f->biggest)
		f->biggest = len - f->last_len;
	f->last_len = len;
}

static void
on_drained(struct stream *s, void *arg)
{
	(void)s;
	((struct fix *)arg)->drained++;
}

static void
on_end(struct stream *s, enum stream_end what, int err, void *arg)
{
	struct fix *f = arg;

	(void)s;
	f->ended++;
	f->end_what = what;
	f->end_err = err;
}

static const struct stream_cbs cbs = { on_read, on_drained, on_end };

static void
fix_up(size_t in_max)
{
	int sv[2];

	memset(&F, 0, sizeof(F));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	F.base = event_base_new();
	ck_assert_ptr_nonnull(F.base);
	F.s = stream_new(F.base, sv[0], in_max, 1024, &cbs, &F);
	ck_assert_ptr_nonnull(F.s);
	F.peer = sv[1];
}

static void
fix_down(void)
{
	if (F.s != NULL)
		stream_free(F.s);
	if (F.peer != -1)
		close(F.peer);
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
	ck_assert_int_eq(stream_reading(F.s), 0);
	event_base_loop(F.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_uint_eq(F.reads, 0);		/* reading starts disabled */
	stream_set_reading(F.s, 1);
	LOOP_UNTIL(F.last_len == len);
	ck_assert_msg(F.biggest > 4096, "largest read %zu bytes: the 4 KiB "
	    "bufferevent limit", F.biggest);
	got = (size_t)evbuffer_remove(stream_input(F.s), dst, len);
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
	evbuffer_add(stream_output(F.s), a, sizeof(a));
	evbuffer_add(stream_output(F.s), b, sizeof(b));
	evbuffer_add(stream_output(F.s), c, sizeof(c));
	fl = fcntl(F.peer, F_GETFL);
	fcntl(F.peer, F_SETFL, fl | O_NONBLOCK);
	ck_assert_int_eq(read(F.peer, got, sizeof(got)), -1);	/* not yet */
	ck_assert_int_eq(errno, EAGAIN);
	event_base_loop(F.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	/* One pass wrote all three, in one piece. */
	ck_assert_int_eq(read(F.peer, got, sizeof(got)), (ssize_t)sizeof(all));
	ck_assert_int_eq(memcmp(got, all, sizeof(all)), 0);
	ck_assert_uint_eq(evbuffer_get_length(stream_output(F.s)), 0);
	ck_assert_uint_eq(F.drained, 1);
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
	evbuffer_add(stream_output(F.s), src, len);
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
	LOOP_UNTIL(evbuffer_get_length(stream_output(F.s)) == 0);
	ck_assert_uint_ge(F.drained, 1);
	ck_assert_int_eq(F.ended, 0);
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
	stream_set_reading(F.s, 1);
	LOOP_UNTIL(!stream_reading(F.s));
	ck_assert_uint_eq(evbuffer_get_length(stream_input(F.s)), 10000);
	/* The rest arrives once the reader drains and reads again. */
	evbuffer_drain(stream_input(F.s), 10000);
	F.last_len = 0;
	stream_set_reading(F.s, 1);
	LOOP_UNTIL(F.last_len == 10000);
	fix_down();
}
END_TEST

START_TEST(eof_ends_the_stream)
{
	fix_up(1 << 20);
	ck_assert_int_eq(write(F.peer, "abc", 3), 3);
	close(F.peer);
	F.peer = -1;
	stream_set_reading(F.s, 1);
	LOOP_UNTIL(F.ended == 1);
	ck_assert_int_eq(F.end_what, STREAM_EOF);
	/* What came before the EOF was delivered first. */
	ck_assert_uint_eq(evbuffer_get_length(stream_input(F.s)), 3);
	fix_down();
}
END_TEST

START_TEST(write_to_a_closed_peer_ends_with_its_errno)
{
	signal(SIGPIPE, SIG_IGN);
	fix_up(1 << 20);
	close(F.peer);
	F.peer = -1;
	evbuffer_add(stream_output(F.s), "abc", 3);
	LOOP_UNTIL(F.ended == 1);
	ck_assert_int_eq(F.end_what, STREAM_WRITE_ERROR);
	ck_assert_int_eq(F.end_err, EPIPE);
	fix_down();
}
END_TEST

static Suite *
stream_suite(void)
{
	Suite *s = suite_create("stream");
	TCase *tc = tcase_create("Core");

	tcase_add_test(tc, reads_in_big_chunks_and_in_order);
	tcase_add_test(tc, output_waits_for_the_loop_then_goes_in_order);
	tcase_add_test(tc, full_socket_waits_and_loses_nothing);
	tcase_add_test(tc, reading_stops_at_the_input_limit);
	tcase_add_test(tc, eof_ends_the_stream);
	tcase_add_test(tc, write_to_a_closed_peer_ends_with_its_errno);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(stream_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
