/*
 * check_tls.c: the TLS contexts against real handshakes. tests/certs.sh
 * makes a throwaway CA with "mirror" and "primary", a rogue CA's "evil",
 * and a rogue CA's "primary" (the right name, the wrong CA, so the chain
 * check is tested on its own). Each test runs the mirror's side in a thread
 * (SSL_accept) and the primary's in the test (SSL_connect) over a
 * socketpair, and records what each side saw in its own thread: OpenSSL's
 * error queue is per thread.
 *
 * In TLS 1.3 the client finishes its handshake before the server has
 * checked the client's certificate, so a refused client learns it from the
 * alert on its first read: each side reads one byte after the handshake.
 *
 * Run from the repository root (make check does).
 */
#include <sys/socket.h>
#include <sys/time.h>

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "common/config.h"
#include "common/tls.h"

#define CERTS_SH	"tests/certs.sh"

static char certdir[1024];
static int certs_ok;
static char certs_why[256];

static int
run(const char *fmt, const char *a)
{
	char cmd[2 * PATH_MAX];
	int n;

	n = snprintf(cmd, sizeof(cmd), fmt, a);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return -1;
	return system(cmd) == 0 ? 0 : -1;
}

/* Unchecked fixture: once per test case, in the runner itself. */
static void
certs_setup(void)
{
	const char *t = getenv("TMPDIR");

	certs_ok = 0;
	snprintf(certdir, sizeof(certdir), "%s/duet-tls.XXXXXX",
	    t != NULL && t[0] != '\0' ? t : "/tmp");
	if (mkdtemp(certdir) == NULL) {
		snprintf(certs_why, sizeof(certs_why), "mkdtemp: %s",
		    strerror(errno));
		certdir[0] = '\0';
		return;
	}
	if (access(CERTS_SH, R_OK) != 0) {
		snprintf(certs_why, sizeof(certs_why), "%s: %s (run from the "
		    "repository root)", CERTS_SH, strerror(errno));
		return;
	}
	if (run("sh " CERTS_SH " '%s' mirror primary", certdir) != 0 ||
	    run("sh " CERTS_SH " '%s' --rogue evil", certdir) != 0 ||
	    run("sh " CERTS_SH " '%s/rogue' --rogue primary", certdir) != 0) {
		snprintf(certs_why, sizeof(certs_why), "%s failed", CERTS_SH);
		return;
	}
	certs_ok = 1;
}

static void
certs_teardown(void)
{
	if (certdir[0] != '\0')
		(void)run("rm -rf '%s'", certdir);
	certdir[0] = '\0';
}

static void
need_certs(void)
{
	ck_assert_msg(certs_ok, "no test certificates: %s", certs_why);
}

/* A config naming certdir/CERT.pem and .key, the CA certdir/ca.pem. */
static struct config *
mkcfg(const char *cert, const char *peer_name)
{
	struct config *c;

	c = calloc(1, sizeof(*c));
	ck_assert_ptr_nonnull(c);
	snprintf(c->tls_ca, sizeof(c->tls_ca), "%s/ca.pem", certdir);
	ck_assert_uint_lt((size_t)snprintf(c->tls_cert, sizeof(c->tls_cert),
	    "%s/%s.pem", certdir, cert), sizeof(c->tls_cert));
	ck_assert_uint_lt((size_t)snprintf(c->tls_key, sizeof(c->tls_key),
	    "%s/%s.key", certdir, cert), sizeof(c->tls_key));
	snprintf(c->tls_peer_name, sizeof(c->tls_peer_name), "%s", peer_name);
	return c;
}

static SSL_CTX *
mkctx(const struct config *c, int server)
{
	char err[1024] = "";
	SSL_CTX *ctx;

	ctx = tls_ctx_new(c, server, err, sizeof(err));
	ck_assert_msg(ctx != NULL, "tls_ctx_new: %s", err);
	return ctx;
}

/* What one side of a handshake saw. */
struct side {
	SSL_CTX		*ctx;
	const char	*peer_name;
	int		 fd;
	int		 server;

	int		 hs_ok;		/* handshake completed */
	int		 io_ok;		/* and one byte each way */
	unsigned long	 err;		/* first queued error, or 0 */
	char		 errstr[256];
	long		 verify;	/* SSL_get_verify_result */
	int		 version;	/* SSL_version */
	char		 peername[256];	/* SSL_get0_peername */
	char		 sni[256];	/* server: the name the client sent */
	int		 queue_left;	/* errors left after tls_log_errors */
};

static void
side_note_error(struct side *s, SSL *ssl, const char *what)
{
	if (s->err == 0 && (s->err = ERR_peek_error()) != 0)
		ERR_error_string_n(s->err, s->errstr, sizeof(s->errstr));
	tls_log_errors(s->server ? "client" : "server", what, ssl);
	s->queue_left = ERR_peek_error() != 0;
}

static void *
side_run(void *arg)
{
	struct side *s = arg;
	const char *p;
	SSL *ssl;
	char c;
	int rc;

	ERR_clear_error();
	ssl = tls_ssl_new(s->ctx, s->peer_name);
	if (ssl == NULL || !SSL_set_fd(ssl, s->fd)) {
		side_note_error(s, NULL, "setup");
		goto out;
	}
	rc = s->server ? SSL_accept(ssl) : SSL_connect(ssl);
	s->verify = SSL_get_verify_result(ssl);
	s->version = SSL_version(ssl);
	if (rc != 1) {
		side_note_error(s, ssl, "handshake");
		goto out;
	}
	s->hs_ok = 1;
	if ((p = SSL_get0_peername(ssl)) != NULL)
		snprintf(s->peername, sizeof(s->peername), "%s", p);
	if (s->server &&
	    (p = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) != NULL)
		snprintf(s->sni, sizeof(s->sni), "%s", p);

	/* The server speaks first; the client answers. */
	if (s->server && SSL_write(ssl, "m", 1) != 1) {
		side_note_error(s, ssl, "write");
		goto out;
	}
	if (SSL_read(ssl, &c, 1) != 1) {
		side_note_error(s, ssl, "read");
		goto out;
	}
	if (!s->server && SSL_write(ssl, "p", 1) != 1) {
		side_note_error(s, ssl, "write");
		goto out;
	}
	s->io_ok = (c == (s->server ? 'p' : 'm'));
	(void)SSL_shutdown(ssl);
out:
	/* Whatever happened, the other side must not wait for us. */
	shutdown(s->fd, SHUT_RDWR);
	SSL_free(ssl);
	return NULL;
}

/*
 * Runs one handshake: the mirror (server) side with sctx expecting
 * speer, the primary (client) side with cctx expecting cpeer.
 */
static void
handshake(SSL_CTX *sctx, const char *speer, SSL_CTX *cctx, const char *cpeer,
    struct side *srv, struct side *cli)
{
	struct timeval tv = { .tv_sec = 10 };
	pthread_t t;
	int sv[2], i;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
	    sv), 0);
	for (i = 0; i < 2; i++)	/* a bug must fail the test, not hang it */
		ck_assert_int_eq(setsockopt(sv[i], SOL_SOCKET, SO_RCVTIMEO,
		    &tv, sizeof(tv)), 0);
	memset(srv, 0, sizeof(*srv));
	memset(cli, 0, sizeof(*cli));
	srv->ctx = sctx;
	srv->peer_name = speer;
	srv->fd = sv[0];
	srv->server = 1;
	cli->ctx = cctx;
	cli->peer_name = cpeer;
	cli->fd = sv[1];

	ck_assert_int_eq(pthread_create(&t, NULL, side_run, srv), 0);
	side_run(cli);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	close(sv[0]);
	close(sv[1]);
	ck_assert(!srv->queue_left && !cli->queue_left);
}

/* ---------------------------------------------------------- Handshake */

START_TEST(test_good)
{
	struct config *mc, *pc;
	SSL_CTX *sctx, *cctx;
	struct side srv, cli;

	need_certs();
	mc = mkcfg("mirror", "primary");
	pc = mkcfg("primary", "mirror");
	sctx = mkctx(mc, 1);
	cctx = mkctx(pc, 0);
	handshake(sctx, mc->tls_peer_name, cctx, pc->tls_peer_name, &srv,
	    &cli);

	ck_assert_msg(srv.hs_ok, "server: %s", srv.errstr);
	ck_assert_msg(cli.hs_ok, "client: %s", cli.errstr);
	ck_assert(srv.io_ok && cli.io_ok);
	ck_assert_int_eq(srv.version, TLS1_3_VERSION);
	ck_assert_int_eq(cli.version, TLS1_3_VERSION);
	ck_assert_int_eq(srv.verify, X509_V_OK);
	ck_assert_int_eq(cli.verify, X509_V_OK);
	/* Each side matched the name it was told to expect. */
	ck_assert_str_eq(srv.peername, "primary");
	ck_assert_str_eq(cli.peername, "mirror");
	ck_assert_str_eq(srv.sni, "mirror");

	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	free(mc);
	free(pc);
}
END_TEST

/* A client certificate from another CA: refused by the mirror. */
static void
rogue_client(const char *cert)
{
	struct config *mc, *pc;
	SSL_CTX *sctx, *cctx;
	struct side srv, cli;

	need_certs();
	mc = mkcfg("mirror", "primary");
	pc = mkcfg(cert, "mirror");
	sctx = mkctx(mc, 1);
	cctx = mkctx(pc, 0);
	handshake(sctx, mc->tls_peer_name, cctx, pc->tls_peer_name, &srv,
	    &cli);

	ck_assert(!srv.hs_ok);
	ck_assert_int_eq(srv.verify, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	ck_assert_int_eq(ERR_GET_REASON(srv.err),
	    SSL_R_CERTIFICATE_VERIFY_FAILED);
	/* The client got through its half, then the mirror's alert. */
	ck_assert(!cli.io_ok);
	ck_assert_int_eq(ERR_GET_REASON(cli.err), SSL_R_TLSV1_ALERT_UNKNOWN_CA);

	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	free(mc);
	free(pc);
}

START_TEST(test_rogue_ca_right_name)
{
	rogue_client("rogue/primary");
}
END_TEST

START_TEST(test_rogue_ca_evil)
{
	rogue_client("evil");
}
END_TEST

/* The mirror's certificate is good, but not the name the primary wants. */
START_TEST(test_server_name_mismatch)
{
	struct config *mc, *pc;
	SSL_CTX *sctx, *cctx;
	struct side srv, cli;

	need_certs();
	mc = mkcfg("mirror", "primary");
	pc = mkcfg("primary", "other");
	sctx = mkctx(mc, 1);
	cctx = mkctx(pc, 0);
	handshake(sctx, mc->tls_peer_name, cctx, pc->tls_peer_name, &srv,
	    &cli);

	ck_assert(!cli.hs_ok);
	ck_assert_int_eq(cli.verify, X509_V_ERR_HOSTNAME_MISMATCH);
	ck_assert_int_eq(ERR_GET_REASON(cli.err),
	    SSL_R_CERTIFICATE_VERIFY_FAILED);
	ck_assert(!srv.hs_ok);

	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	free(mc);
	free(pc);
}
END_TEST

/* The same on the mirror's side: a CA-signed client with the wrong name. */
START_TEST(test_client_name_mismatch)
{
	struct config *mc, *pc;
	SSL_CTX *sctx, *cctx;
	struct side srv, cli;

	need_certs();
	mc = mkcfg("mirror", "primary");
	pc = mkcfg("mirror", "mirror");		/* not "primary" */
	sctx = mkctx(mc, 1);
	cctx = mkctx(pc, 0);
	handshake(sctx, mc->tls_peer_name, cctx, pc->tls_peer_name, &srv,
	    &cli);

	ck_assert(!srv.hs_ok);
	ck_assert_int_eq(srv.verify, X509_V_ERR_HOSTNAME_MISMATCH);
	ck_assert_int_eq(ERR_GET_REASON(srv.err),
	    SSL_R_CERTIFICATE_VERIFY_FAILED);
	ck_assert(!cli.io_ok);

	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	free(mc);
	free(pc);
}
END_TEST

/* A client that trusts the CA but has no certificate of its own. */
START_TEST(test_client_no_cert)
{
	struct config *mc;
	SSL_CTX *sctx, *cctx;
	struct side srv, cli;
	char ca[PATH_MAX];

	need_certs();
	mc = mkcfg("mirror", "primary");
	sctx = mkctx(mc, 1);
	cctx = SSL_CTX_new(TLS_client_method());
	ck_assert_ptr_nonnull(cctx);
	snprintf(ca, sizeof(ca), "%s/ca.pem", certdir);
	ck_assert_int_eq(SSL_CTX_load_verify_locations(cctx, ca, NULL), 1);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	handshake(sctx, mc->tls_peer_name, cctx, "mirror", &srv, &cli);

	ck_assert(!srv.hs_ok);
	ck_assert_int_eq(ERR_GET_REASON(srv.err),
	    SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE);
	ck_assert(!cli.io_ok);
	ck_assert_int_eq(ERR_GET_REASON(cli.err),
	    SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED);

	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	free(mc);
}
END_TEST

/* A client that will not go above TLS 1.2: no handshake at all. */
START_TEST(test_tls12_refused)
{
	struct config *mc, *pc;
	SSL_CTX *sctx, *cctx;
	struct side srv, cli;

	need_certs();
	mc = mkcfg("mirror", "primary");
	pc = mkcfg("primary", "mirror");
	sctx = mkctx(mc, 1);
	cctx = mkctx(pc, 0);
	ck_assert_int_eq(SSL_CTX_set_min_proto_version(cctx, TLS1_2_VERSION),
	    1);
	ck_assert_int_eq(SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION),
	    1);
	handshake(sctx, mc->tls_peer_name, cctx, pc->tls_peer_name, &srv,
	    &cli);

	ck_assert(!srv.hs_ok && !cli.hs_ok);
	ck_assert_int_eq(ERR_GET_REASON(srv.err), SSL_R_UNSUPPORTED_PROTOCOL);

	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	free(mc);
	free(pc);
}
END_TEST

/* ------------------------------------------------------------- Errors */

/* tls_ctx_new fails, naming option and path; returns the message. */
static void
ctx_fails(const struct config *c, const char *option, const char *path,
    const char *also)
{
	char err[1024] = "", want[PATH_MAX + 64];

	ck_assert_ptr_null(tls_ctx_new(c, 1, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s %s: ", option, path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0,
	    "err \"%s\" does not start with \"%s\"", err, want);
	if (also != NULL)
		ck_assert_msg(strstr(err, also) != NULL,
		    "err \"%s\" does not say \"%s\"", err, also);
	ck_assert_int_eq(ERR_peek_error(), 0);	/* drained into err */
}

START_TEST(test_missing_cert)
{
	struct config *c;

	need_certs();
	c = mkcfg("mirror", "primary");
	snprintf(c->tls_cert, sizeof(c->tls_cert), "%s/nonexistent.pem",
	    certdir);
	ctx_fails(c, "tls.cert", c->tls_cert, "No such file or directory");
	free(c);
}
END_TEST

START_TEST(test_missing_ca_and_key)
{
	struct config *c;

	need_certs();
	c = mkcfg("mirror", "primary");
	snprintf(c->tls_ca, sizeof(c->tls_ca), "%s/no-ca.pem", certdir);
	ctx_fails(c, "tls.ca", c->tls_ca, "No such file or directory");
	free(c);

	c = mkcfg("mirror", "primary");
	snprintf(c->tls_key, sizeof(c->tls_key), "%s/no.key", certdir);
	ctx_fails(c, "tls.key", c->tls_key, "No such file or directory");
	free(c);
}
END_TEST

START_TEST(test_bad_files)
{
	struct config *c;

	need_certs();
	/* Not PEM at all: OpenSSL's own reason. */
	c = mkcfg("mirror", "primary");
	snprintf(c->tls_cert, sizeof(c->tls_cert), "%s", CERTS_SH);
	ctx_fails(c, "tls.cert", CERTS_SH, NULL);
	free(c);

	/* A key that belongs to another certificate. */
	c = mkcfg("mirror", "primary");
	snprintf(c->tls_key, sizeof(c->tls_key), "%s/primary.key", certdir);
	ctx_fails(c, "tls.key", c->tls_key, "does not match");
	free(c);

	/* A certificate given as the CA file: loads, but trusts nothing we
	 * meet (covered by the handshake tests); a key as CA: refused. */
	c = mkcfg("mirror", "primary");
	snprintf(c->tls_ca, sizeof(c->tls_ca), "%s/ca.key", certdir);
	ctx_fails(c, "tls.ca", c->tls_ca, NULL);
	free(c);
}
END_TEST

START_TEST(test_ssl_new_needs_name)
{
	struct config *c;
	SSL_CTX *ctx;
	SSL *ssl;

	need_certs();
	c = mkcfg("primary", "mirror");
	ctx = mkctx(c, 0);
	ck_assert_ptr_null(tls_ssl_new(ctx, NULL));
	ck_assert_ptr_null(tls_ssl_new(ctx, ""));
	ssl = tls_ssl_new(ctx, "mirror");
	ck_assert_ptr_nonnull(ssl);
	ck_assert_str_eq(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name),
	    "mirror");
	SSL_free(ssl);
	/* An IP literal: checked against the certificate, but no SNI. */
	ssl = tls_ssl_new(ctx, "192.0.2.1");
	ck_assert_ptr_nonnull(ssl);
	ck_assert_ptr_null(SSL_get_servername(ssl,
	    TLSEXT_NAMETYPE_host_name));
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	free(c);
}
END_TEST

START_TEST(test_log_errors_drains)
{
	ERR_raise_data(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED,
	    "test detail %d", 42);
	ck_assert_int_ne(ERR_peek_error(), 0);
	tls_log_errors("192.0.2.1:7790", "handshake", NULL);
	ck_assert_int_eq(ERR_peek_error(), 0);
	tls_log_errors(NULL, "nothing", NULL);
}
END_TEST

static Suite *
tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc;

	tc = tcase_create("Handshake");
	tcase_add_unchecked_fixture(tc, certs_setup, certs_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_good);
	tcase_add_test(tc, test_rogue_ca_right_name);
	tcase_add_test(tc, test_rogue_ca_evil);
	tcase_add_test(tc, test_server_name_mismatch);
	tcase_add_test(tc, test_client_name_mismatch);
	tcase_add_test(tc, test_client_no_cert);
	tcase_add_test(tc, test_tls12_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("Errors");
	tcase_add_unchecked_fixture(tc, certs_setup, certs_teardown);
	tcase_add_test(tc, test_missing_cert);
	tcase_add_test(tc, test_missing_ca_and_key);
	tcase_add_test(tc, test_bad_files);
	tcase_add_test(tc, test_ssl_new_needs_name);
	tcase_add_test(tc, test_log_errors_drains);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(tls_suite());
	int failures;

	/* A side that writes after its peer hung up must get EPIPE, not be
	 * killed (a daemon on OpenSSL needs the same: SIG_IGN SIGPIPE). */
	signal(SIGPIPE, SIG_IGN);

	srunner_run_all(sr, CK_NORMAL);
	failures = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failures != 0;
}
