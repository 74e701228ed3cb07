/*
 * check_resolve: getaddrinfo on a thread, answered on the loop's thread.
 * A name resolves (localhost, from /etc/hosts; a numeric address), a bad
 * one gives getaddrinfo's error, and a cancelled request never calls back
 * however its thread ends. Also run under TSan (make tsan).
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "common/resolve.h"

struct got {
	int		 calls;
	int		 rc;
	struct addrinfo	*res;
	pthread_t	 thread;
};

static void
got_cb(int rc, struct addrinfo *res, void *arg)
{
	struct got *g = arg;

	g->calls++;
	g->rc = rc;
	g->res = res;
	g->thread = pthread_self();
}

static struct event_base *
base_new(void)
{
	struct event_base *base;

	ck_assert_int_eq(evthread_use_pthreads(), 0);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	return base;
}

/* Runs base until g was called back (10 s at most). */
static void
loop_until_called(struct event_base *base, struct got *g)
{
	struct timeval tick = { 0, 10000 };
	int i;

	for (i = 0; i < 1000 && g->calls == 0; i++) {
		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
	}
	ck_assert_int_eq(g->calls, 1);
}

START_TEST(numeric_address_resolves_on_the_loop_thread)
{
	struct event_base *base = base_new();
	struct got g = { 0 };
	struct sockaddr_in *sin;

	ck_assert_ptr_nonnull(resolve_start(base, "127.0.0.1", "7790",
	    got_cb, &g));
	loop_until_called(base, &g);
	ck_assert_int_eq(g.rc, 0);
	ck_assert(pthread_equal(g.thread, pthread_self()));
	ck_assert_ptr_nonnull(g.res);
	ck_assert_int_eq(g.res->ai_family, AF_INET);
	sin = (struct sockaddr_in *)g.res->ai_addr;
	ck_assert_int_eq(ntohs(sin->sin_port), 7790);
	ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	freeaddrinfo(g.res);
	event_base_free(base);
}
END_TEST

START_TEST(localhost_resolves)
{
	struct event_base *base = base_new();
	struct got g = { 0 };

	ck_assert_ptr_nonnull(resolve_start(base, "localhost", "1", got_cb,
	    &g));
	loop_until_called(base, &g);
	ck_assert_int_eq(g.rc, 0);
	freeaddrinfo(g.res);
	event_base_free(base);
}
END_TEST

START_TEST(bad_port_gives_getaddrinfo_error)
{
	struct event_base *base = base_new();
	struct got g = { 0 };

	ck_assert_ptr_nonnull(resolve_start(base, "127.0.0.1",
	    "no-such-service-here", got_cb, &g));
	loop_until_called(base, &g);
	ck_assert_int_eq(g.rc, EAI_SERVICE);
	ck_assert_ptr_null(g.res);
	event_base_free(base);
}
END_TEST

START_TEST(too_long_a_name_is_refused)
{
	struct event_base *base = base_new();
	char name[300];
	struct got g = { 0 };

	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	ck_assert_ptr_null(resolve_start(base, name, "1", got_cb, &g));
	event_base_free(base);
}
END_TEST

/* Cancelled at once, or after the thread has answered: no callback. */
START_TEST(cancelled_never_calls_back)
{
	struct event_base *base = base_new();
	struct timeval tick = { 0, 200000 };
	struct got g = { 0 };
	struct resolve *r;
	int i;

	for (i = 0; i < 20; i++) {
		ck_assert_ptr_nonnull(r = resolve_start(base, "127.0.0.1",
		    "1", got_cb, &g));
		if (i % 2)
			usleep(20000);	/* the thread is likely done */
		resolve_cancel(r);
	}
	event_base_loopexit(base, &tick);
	event_base_dispatch(base);
	ck_assert_int_eq(g.calls, 0);
	usleep(100000);		/* late threads clean up after themselves */
	event_base_free(base);
}
END_TEST

static Suite *
resolve_suite(void)
{
	Suite *s = suite_create("resolve");
	TCase *tc = tcase_create("Core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, numeric_address_resolves_on_the_loop_thread);
	tcase_add_test(tc, localhost_resolves);
	tcase_add_test(tc, bad_port_gives_getaddrinfo_error);
	tcase_add_test(tc, too_long_a_name_is_refused);
	tcase_add_test(tc, cancelled_never_calls_back);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(resolve_suite());
	int nfailed;

	srunner_run_all(sr, CK_NORMAL);
	nfailed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfailed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
