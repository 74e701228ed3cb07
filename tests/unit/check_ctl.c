/*
 * check_ctl.c: the status socket server (common/ctl.c). The test drives
 * the event loop itself (EVLOOP_NONBLOCK) between the client's sends and
 * receives, so everything runs on one thread, as in the daemons.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "common/ctl.h"

#define BIG	(64 * 1024)		/* the "big" reply's payload */

static char dir[64], path[128];
static struct event_base *base;
static struct ctl *ctl;
static int handled;

static json_t *
handler(void *arg, const char *verb, const char *args)
{
	(void)arg;
	handled++;
	if (strcmp(verb, "status") == 0)
		return json_pack("{s:s, s:s}", "volume", "vol0", "role",
		    "primary");
	if (strcmp(verb, "echo") == 0)
		return json_pack("{s:s}", "args", args);
	if (strcmp(verb, "big") == 0) {
		char *blob = malloc(BIG + 1);
		json_t *o;

		memset(blob, 'x', BIG);
		blob[BIG] = '\0';
		o = json_pack("{s:s}", "blob", blob);
		free(blob);
		return o;
	}
	if (strcmp(verb, "fail") == 0)
		return ctl_error("busy", "try again");
	if (strcmp(verb, "notobj") == 0)
		return json_integer(1);
	if (strcmp(verb, "okfalse") == 0)
		return json_pack("{s:b}", "ok", 0);
	return NULL;
}

static void
setup(void)
{
	char err[256];

	snprintf(dir, sizeof(dir), "/tmp/check_ctl.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/status.sock", dir);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	handled = 0;
	ck_assert_msg(ctl_listen(&ctl, base, path, NULL, handler, NULL, err,
	    sizeof(err)) == 0, "ctl_listen: %s", err);
}

static void
teardown(void)
{
	ctl_free(ctl);
	ctl = NULL;
	event_base_free(base);
	unlink(path);
	rmdir(dir);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs the loop for about secs (without blocking in it). */
static void
spin(double secs)
{
	double end = now() + secs;

	do {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	} while (now() < end);
}

struct client {
	int	fd;
	char	buf[1 << 20];
	size_t	n;
	int	eof;
};

static struct client *
cl_open(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct client *c = calloc(1, sizeof(*c));

	ck_assert_ptr_nonnull(c);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_ge(c->fd, 0);
	ck_assert_msg(connect(c->fd, (struct sockaddr *)&sun,
	    sizeof(sun)) == 0, "connect: %s", strerror(errno));
	return c;
}

static void
cl_close(struct client *c)
{
	close(c->fd);
	free(c);
}

static void
cl_send(struct client *c, const void *p, size_t len)
{
	ck_assert_int_eq(send(c->fd, p, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Reads what has arrived; 1 on progress. */
static int
cl_pull(struct client *c)
{
	ssize_t r;

	if (c->eof || c->n == sizeof(c->buf))
		return 0;
	r = recv(c->fd, c->buf + c->n, sizeof(c->buf) - c->n, MSG_DONTWAIT);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
		c->eof = 1;
		return 1;
	}
	if (r > 0)
		c->n += (size_t)r;
	return r > 0;
}

/*
 * The next reply line (its raw text in raw if given), within 5 s; NULL at
 * EOF without one.
 */
static json_t *
cl_reply(struct client *c, char *raw, size_t rawlen)
{
	double end = now() + 5;
	json_error_t jerr;
	json_t *j;
	char *nl;

	for (;;) {
		if ((nl = memchr(c->buf, '\n', c->n)) != NULL)
			break;
		if (c->eof)
			return NULL;
		ck_assert_msg(now() < end, "no reply within 5 s");
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (!cl_pull(c))
			usleep(500);
	}
	*nl = '\0';
	if (raw != NULL) {
		ck_assert_uint_lt((size_t)(nl - c->buf), rawlen);
		memcpy(raw, c->buf, (size_t)(nl - c->buf) + 1);
	}
	j = json_loads(c->buf, 0, &jerr);
	ck_assert_msg(j != NULL, "not JSON: %s (%s)", c->buf, jerr.text);
	c->n -= (size_t)(nl + 1 - c->buf);
	memmove(c->buf, nl + 1, c->n);
	return j;
}

/* Waits (5 s) for the server to close the connection. */
static void
cl_wait_eof(struct client *c)
{
	double end = now() + 5;

	while (!c->eof) {
		ck_assert_msg(now() < end, "the server did not close");
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (!cl_pull(c))
			usleep(500);
		ck_assert_msg(memchr(c->buf, '\n', c->n) == NULL,
		    "unexpected reply: %.*s", (int)c->n, c->buf);
	}
}

static const char *
err_code(json_t *j)
{
	ck_assert(json_is_false(json_object_get(j, "ok")));
	return json_string_value(json_object_get(json_object_get(j, "error"),
	    "code"));
}

/* ---- Core ---------------------------------------------------------------- */

START_TEST(status_has_ok_first)
{
	struct client *c = cl_open();
	char raw[256];
	json_t *j;

	cl_send(c, "status\n", 7);
	j = cl_reply(c, raw, sizeof(raw));
	ck_assert_str_eq(raw, "{\"ok\":true,\"volume\":\"vol0\",\"role\":\"primary\"}");
	ck_assert(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	cl_close(c);
}
END_TEST

START_TEST(verb_and_args_are_split)
{
	struct client *c = cl_open();
	json_t *j;

	cl_send(c, "  echo   a  b \t\r\n", 17);
	j = cl_reply(c, NULL, 0);
	ck_assert_str_eq(json_string_value(json_object_get(j, "args")), "a  b");
	json_decref(j);
	cl_send(c, "echo\n", 5);
	j = cl_reply(c, NULL, 0);
	ck_assert_str_eq(json_string_value(json_object_get(j, "args")), "");
	json_decref(j);
	cl_close(c);
}
END_TEST

START_TEST(empty_lines_are_ignored)
{
	struct client *c = cl_open();
	json_t *j;

	cl_send(c, "\n \r\n\t\nstatus\n", 13);
	j = cl_reply(c, NULL, 0);
	ck_assert_str_eq(json_string_value(json_object_get(j, "volume")), "vol0");
	json_decref(j);
	ck_assert_int_eq(handled, 1);
	ck_assert_uint_eq(c->n, 0);
	cl_close(c);
}
END_TEST

START_TEST(pipelined_requests_answer_in_order)
{
	struct client *c = cl_open();
	json_t *j;
	char want[16];

	cl_send(c, "echo 1\necho 2\necho 3\n", 21);
	for (int i = 1; i <= 3; i++) {
		snprintf(want, sizeof(want), "%d", i);
		j = cl_reply(c, NULL, 0);
		ck_assert_str_eq(json_string_value(json_object_get(j, "args")),
		    want);
		json_decref(j);
	}
	cl_close(c);
}
END_TEST

START_TEST(last_line_without_newline_at_eof)
{
	struct client *c = cl_open();
	json_t *j;

	cl_send(c, "echo 1\necho 2", 13);
	shutdown(c->fd, SHUT_WR);
	j = cl_reply(c, NULL, 0);
	json_decref(j);
	j = cl_reply(c, NULL, 0);
	ck_assert_str_eq(json_string_value(json_object_get(j, "args")), "2");
	json_decref(j);
	cl_wait_eof(c);
	cl_close(c);
}
END_TEST

START_TEST(many_clients_at_once)
{
	struct client *c[100];
	json_t *j;

	for (int i = 0; i < 100; i++) {
		c[i] = cl_open();
		cl_send(c[i], "status\n", 7);
		if (i % 32 == 31)
			spin(0.05);	/* accept them: the backlog is finite */
	}
	for (int i = 99; i >= 0; i--) {
		j = cl_reply(c[i], NULL, 0);
		ck_assert(json_is_true(json_object_get(j, "ok")));
		json_decref(j);
		cl_close(c[i]);
	}
}
END_TEST

START_TEST(free_unlinks_the_socket)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	ctl_free(ctl);
	ctl = NULL;
	ck_assert_int_eq(stat(path, &st), -1);
	ctl_free(NULL);
}
END_TEST

/* ---- Errors -------------------------------------------------------------- */

START_TEST(unknown_verb)
{
	struct client *c = cl_open();
	json_t *j;

	cl_send(c, "frobnicate now\n", 15);
	j = cl_reply(c, NULL, 0);
	ck_assert_str_eq(err_code(j), "unknown-command");
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(
	    json_object_get(j, "error"), "message")), "frobnicate"));
	json_decref(j);
	/* still served */
	cl_send(c, "status\n", 7);
	j = cl_reply(c, NULL, 0);
	ck_assert(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	cl_close(c);
}
END_TEST

START_TEST(handler_errors_pass_through)
{
	struct client *c = cl_open();
	json_t *j;

	cl_send(c, "fail\nnotobj\nokfalse\n", 20);
	j = cl_reply(c, NULL, 0);
	ck_assert_str_eq(err_code(j), "busy");
	json_decref(j);
	j = cl_reply(c, NULL, 0);
	ck_assert_str_eq(err_code(j), "internal");
	json_decref(j);
	j = cl_reply(c, NULL, 0);
	ck_assert(json_is_false(json_object_get(j, "ok")));
	json_decref(j);
	cl_close(c);
}
END_TEST

START_TEST(line_too_long)
{
	struct client *c = cl_open(), *d;
	char line[5 * 1024 + 1];
	json_t *j;

	memset(line, 'a', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\n';
	cl_send(c, line, sizeof(line));
	j = cl_reply(c, NULL, 0);
	ck_assert_str_eq(err_code(j), "line-too-long");
	json_decref(j);
	cl_wait_eof(c);
	cl_close(c);
	ck_assert_int_eq(handled, 0);

	/* The same without any newline, and 4097 bytes with one. */
	c = cl_open();
	cl_send(c, line, sizeof(line) - 1);
	j = cl_reply(c, NULL, 0);
	ck_assert_str_eq(err_code(j), "line-too-long");
	json_decref(j);
	cl_wait_eof(c);
	cl_close(c);
	c = cl_open();
	line[CTL_LINE_MAX + 1] = '\n';
	cl_send(c, line, CTL_LINE_MAX + 2);
	j = cl_reply(c, NULL, 0);
	ck_assert_str_eq(err_code(j), "line-too-long");
	json_decref(j);
	cl_close(c);

	/* Exactly CTL_LINE_MAX is a request (here an unknown one). */
	d = cl_open();
	line[CTL_LINE_MAX] = '\n';
	cl_send(d, line, CTL_LINE_MAX + 1);
	j = cl_reply(d, NULL, 0);
	ck_assert_str_eq(err_code(j), "unknown-command");
	json_decref(j);
	cl_close(d);
}
END_TEST

START_TEST(garbage_bytes)
{
	static const char *bad[] = {
		"\xff\xfe garbage\n", "stat\0us\n", "\xc0\xaf\n",
		"\xed\xa0\x80\n", "status \xe2\x82\n",
	};
	static const size_t badlen[] = { 11, 8, 3, 4, 10 };
	struct client *c = cl_open(), *d;
	json_t *j;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cl_send(c, bad[i], badlen[i]);
		j = cl_reply(c, NULL, 0);
		ck_assert_msg(j != NULL, "case %zu: no reply", i);
		ck_assert_msg(strcmp(err_code(j), "bad-argument") == 0,
		    "case %zu", i);
		json_decref(j);
	}
	ck_assert_int_eq(handled, 0);
	/* the same client, then another, still answered */
	cl_send(c, "echo \xc3\xa9t\xc3\xa9\n", 11);
	j = cl_reply(c, NULL, 0);
	ck_assert_str_eq(json_string_value(json_object_get(j, "args")),
	    "\xc3\xa9t\xc3\xa9");
	json_decref(j);
	d = cl_open();
	cl_send(d, "status\n", 7);
	j = cl_reply(d, NULL, 0);
	ck_assert(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	cl_close(c);
	cl_close(d);
}
END_TEST

/* ---- Limits -------------------------------------------------------------- */

START_TEST(non_reader_is_dropped)
{
	struct client *slow = cl_open(), *c;
	int dropped = 0;
	json_t *j;

	/* 64 KiB replies, never read: beyond the socket buffer and CTL_OUT_MAX. */
	for (int i = 0; i < 200 && !dropped; i++) {
		if (send(slow->fd, "big\n", 4, MSG_NOSIGNAL) != 4)
			dropped = 1;
		spin(0.005);
	}
	ck_assert_msg(dropped, "a client that never reads was not dropped");

	/* Others are answered, with big replies too. */
	c = cl_open();
	cl_send(c, "big\nstatus\n", 11);
	j = cl_reply(c, NULL, 0);
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(j, "blob"))),
	    BIG);
	json_decref(j);
	j = cl_reply(c, NULL, 0);
	ck_assert(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	cl_close(c);
	cl_close(slow);
}
END_TEST

START_TEST(clients_over_the_limit_are_busy)
{
	struct client *c[CTL_CLIENTS_MAX + 1];
	json_t *j;
	int i;

	for (i = 0; i < CTL_CLIENTS_MAX; i++) {
		c[i] = cl_open();
		if (i % 32 == 31)
			spin(0.05);
	}
	spin(0.2);
	c[i] = cl_open();
	j = cl_reply(c[i], NULL, 0);
	ck_assert_str_eq(err_code(j), "busy");
	json_decref(j);
	cl_close(c[i]);
	/* one goes; a new one is served */
	cl_close(c[0]);
	spin(0.1);
	c[0] = cl_open();
	cl_send(c[0], "status\n", 7);
	j = cl_reply(c[0], NULL, 0);
	ck_assert(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	for (i = 0; i < CTL_CLIENTS_MAX; i++)
		cl_close(c[i]);
}
END_TEST

START_TEST(emfile_pauses_accept)
{
	struct rlimit rl = { 64, 64 };
	struct rusage r0, r1;
	struct client *c;
	int fds[256], n = 0;
	double cpu;
	json_t *j;

	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	c = cl_open();
	cl_send(c, "status\n", 7);
	while (n < 256 && (fds[n] = open("/dev/null", O_RDONLY)) != -1)
		n++;
	ck_assert_int_eq(errno, EMFILE);

	/*
	 * accept fails with EMFILE. The pending connection keeps the
	 * listener readable, so a listener that is not paused makes the
	 * loop spin: half a second of a blocking loop would burn half a
	 * second of CPU. Paused, the loop sleeps.
	 */
	getrusage(RUSAGE_SELF, &r0);
	{
		struct timeval tv = { 0, 500000 };

		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	getrusage(RUSAGE_SELF, &r1);
	ck_assert_uint_eq(c->n, 0);
	cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
	    (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
	    (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
	    (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
	ck_assert_msg(cpu < 0.2, "the loop spun on EMFILE: %.2f s CPU", cpu);

	while (n > 0)
		close(fds[--n]);
	j = cl_reply(c, NULL, 0);	/* within 5 s: the pause is 1 s */
	ck_assert(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	cl_close(c);
}
END_TEST

/* ---- Socket -------------------------------------------------------------- */

START_TEST(socket_mode_is_0660)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0660);
}
END_TEST

START_TEST(group_is_set)
{
	struct group *gr;
	struct stat st;
	char err[256];

	if (geteuid() != 0)
		return;		/* chown to another group needs root */
	gr = getgrnam("daemon");
	if (gr == NULL)
		return;
	ctl_free(ctl);
	ck_assert_msg(ctl_listen(&ctl, base, path, "daemon", handler, NULL,
	    err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_gid, gr->gr_gid);
	ck_assert_uint_eq(st.st_mode & 07777, 0660);
}
END_TEST

START_TEST(unknown_group_is_refused)
{
	struct ctl *c2 = NULL;
	char err[256], p2[200];

	snprintf(p2, sizeof(p2), "%s/other.sock", dir);
	ck_assert_int_eq(ctl_listen(&c2, base, p2, "no-such-group-duet",
	    handler, NULL, err, sizeof(err)), -1);
	ck_assert_ptr_null(c2);
	ck_assert_ptr_nonnull(strstr(err, "status.group"));
	ck_assert_ptr_nonnull(strstr(err, "no-such-group-duet"));
	ck_assert_int_eq(access(p2, F_OK), -1);
}
END_TEST

START_TEST(stale_socket_is_replaced)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct client *c;
	char err[256];
	json_t *j;
	int fd;

	/* A socket file nobody listens on, as a crashed daemon leaves. */
	ctl_free(ctl);
	ctl = NULL;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	ck_assert_msg(ctl_listen(&ctl, base, path, NULL, handler, NULL, err,
	    sizeof(err)) == 0, "%s", err);
	c = cl_open();
	cl_send(c, "status\n", 7);
	j = cl_reply(c, NULL, 0);
	ck_assert(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	cl_close(c);
}
END_TEST

START_TEST(live_socket_is_not_stolen)
{
	struct ctl *c2 = NULL;
	struct stat st;
	char err[256];

	ck_assert_int_eq(ctl_listen(&c2, base, path, NULL, handler, NULL,
	    err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "in use"));
	ck_assert_int_eq(stat(path, &st), 0);	/* still ours */
}
END_TEST

START_TEST(non_socket_is_not_removed)
{
	struct ctl *c2 = NULL;
	char err[256], p2[200];
	FILE *f;

	snprintf(p2, sizeof(p2), "%s/file", dir);
	f = fopen(p2, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	ck_assert_int_eq(ctl_listen(&c2, base, p2, NULL, handler, NULL,
	    err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a socket"));
	ck_assert_int_eq(access(p2, F_OK), 0);
	unlink(p2);

	/* A path that cannot be a socket address. */
	memset(p2, 'x', sizeof(p2) - 1);
	p2[sizeof(p2) - 1] = '\0';
	ck_assert_int_eq(ctl_listen(&c2, base, p2, NULL, handler, NULL,
	    err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "status.socket"));
}
END_TEST

START_TEST(ctl_error_shape)
{
	json_t *j = ctl_error("bad-argument", "n=%d %s", 3, "\xff\xfe");
	char *s;

	ck_assert_ptr_nonnull(j);
	s = json_dumps(j, JSON_COMPACT);
	ck_assert_str_eq(s, "{\"ok\":false,\"error\":{\"code\":\"bad-argument\","
	    "\"message\":\"n=3 ??\"}}");
	free(s);
	json_decref(j);
}
END_TEST

static Suite *
ctl_suite(void)
{
	Suite *s = suite_create("ctl");
	TCase *tc;

	tc = tcase_create("Core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, status_has_ok_first);
	tcase_add_test(tc, verb_and_args_are_split);
	tcase_add_test(tc, empty_lines_are_ignored);
	tcase_add_test(tc, pipelined_requests_answer_in_order);
	tcase_add_test(tc, last_line_without_newline_at_eof);
	tcase_add_test(tc, many_clients_at_once);
	tcase_add_test(tc, free_unlinks_the_socket);
	tcase_add_test(tc, ctl_error_shape);
	suite_add_tcase(s, tc);

	tc = tcase_create("Errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, unknown_verb);
	tcase_add_test(tc, handler_errors_pass_through);
	tcase_add_test(tc, line_too_long);
	tcase_add_test(tc, garbage_bytes);
	suite_add_tcase(s, tc);

	tc = tcase_create("Limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, non_reader_is_dropped);
	tcase_add_test(tc, clients_over_the_limit_are_busy);
	tcase_add_test(tc, emfile_pauses_accept);
	suite_add_tcase(s, tc);

	tc = tcase_create("Socket");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, socket_mode_is_0660);
	tcase_add_test(tc, group_is_set);
	tcase_add_test(tc, unknown_group_is_refused);
	tcase_add_test(tc, stale_socket_is_replaced);
	tcase_add_test(tc, live_socket_is_not_stolen);
	tcase_add_test(tc, non_socket_is_not_removed);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ctl_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
