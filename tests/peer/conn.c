/*
 * conn.c: the test peer's one TLS connection (see peer.h). TCP connect,
 * the client side of the handshake through common/tls.c (the same contexts
 * the daemons use), then non-blocking I/O through poll. The mirror closing
 * on us in any way (close_notify, EOF, reset, a fatal alert) is c->eof, not
 * an error: several callers expect exactly that.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "common/config.h"
#include "common/tls.h"
#include "tests/peer/peer.h"

#define CONN_READ_CHUNK	(256 * 1024)

uint64_t
peer_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Drains OpenSSL's error queue into buf ("; "-separated). */
static void
conn_ssl_errors(char *buf, size_t len)
{
	char line[256];
	unsigned long e;
	size_t n;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, line, sizeof(line));
		n = strlen(buf);
		if (n + 1 < len)
			snprintf(buf + n, len - n, "%s%s", n ? "; " : "", line);
	}
}

/*
 * Prints "local ADDR:PORT" to stdout: the address the mirror logs for us,
 * so a test can find the mirror's log lines about this connection.
 */
static void
conn_print_local(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1 ||
	    getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), serv,
	    sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return;
	if (ss.ss_family == AF_INET6)
		printf("local [%s]:%s\n", host, serv);
	else
		printf("local %s:%s\n", host, serv);
	fflush(stdout);
}

static int
conn_tcp(struct conn *c, const char *hostport)
{
	char host[256], port[16];
	struct addrinfo hints, *res, *ai;
	int fd = -1, rc, one = 1, saved = 0;

	if (config_split_hostport(hostport, host, sizeof(host), port,
	    sizeof(port)) == -1) {
		fprintf(stderr, "testpeer: --connect %s: not host:port\n",
		    hostport);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		fprintf(stderr, "testpeer: %s: %s\n", hostport,
		    gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1) {
			saved = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1) {
		fprintf(stderr, "testpeer: connect %s: %s\n", hostport,
		    strerror(saved));
		return -1;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1) {
		fprintf(stderr, "testpeer: fcntl: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	c->fd = fd;
	snprintf(c->addr, sizeof(c->addr), "%s", hostport);
	conn_print_local(fd);
	return 0;
}

/*
 * --no-cert: the client context of tls.c (TLS 1.3, the mirror verified
 * against the CA) without a certificate of our own, which the mirror must
 * refuse.
 */
static SSL_CTX *
conn_ctx_nocert(const struct peer_opts *o, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_load_verify_locations(ctx, o->ca, NULL)) {
		conn_ssl_errors(err, errlen);
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

int
conn_open_tcp(struct conn *c, const char *hostport)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	return conn_tcp(c, hostport);
}

int
conn_open(struct conn *c, const struct peer_opts *o)
{
	struct config cfg;
	char err[1024];
	struct pollfd pfd;
	uint64_t deadline;
	long vr;
	int rc, e;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.tls_ca, sizeof(cfg.tls_ca), "%s", o->ca);
	snprintf(cfg.tls_cert, sizeof(cfg.tls_cert), "%s", o->cert);
	snprintf(cfg.tls_key, sizeof(cfg.tls_key), "%s", o->key);
	snprintf(cfg.tls_peer_name, sizeof(cfg.tls_peer_name), "%s",
	    o->peer_name);
	c->ctx = o->no_cert ? conn_ctx_nocert(o, err, sizeof(err)) :
	    tls_ctx_new(&cfg, 0, err, sizeof(err));
	if (c->ctx == NULL) {
		fprintf(stderr, "testpeer: TLS setup: %s\n", err);
		return -1;
	}
	if (o->tls12 &&
	    (!SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(c->ctx, TLS1_2_VERSION))) {
		conn_ssl_errors(err, sizeof(err));
		fprintf(stderr, "testpeer: cannot limit TLS to 1.2: %s\n", err);
		return -1;
	}
	if ((c->ssl = tls_ssl_new(c->ctx, o->peer_name)) == NULL) {
		conn_ssl_errors(err, sizeof(err));
		fprintf(stderr, "testpeer: SSL_new: %s\n", err);
		return -1;
	}
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (conn_tcp(c, o->connect) == -1)
		return -1;
	if (!SSL_set_fd(c->ssl, c->fd)) {
		fprintf(stderr, "testpeer: SSL_set_fd failed\n");
		return -1;
	}

	deadline = peer_now_ms() + (uint64_t)o->timeout * 1000;
	for (;;) {
		ERR_clear_error();
		if ((rc = SSL_connect(c->ssl)) == 1)
			break;
		e = SSL_get_error(c->ssl, rc);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			int saved = errno;

			conn_ssl_errors(err, sizeof(err));
			vr = SSL_get_verify_result(c->ssl);
			fprintf(stderr, "testpeer: TLS handshake with %s "
			    "failed: %s%s%s\n", c->addr,
			    err[0] ? err : e == SSL_ERROR_SYSCALL ?
			    (saved ? strerror(saved) : "connection closed") :
			    "unknown error",
			    vr != X509_V_OK ? "; certificate: " : "",
			    vr != X509_V_OK ?
			    X509_verify_cert_error_string(vr) : "");
			return -1;
		}
		if (peer_now_ms() >= deadline) {
			fprintf(stderr, "testpeer: TLS handshake with %s "
			    "timed out\n", c->addr);
			return -1;
		}
		pfd.fd = c->fd;
		pfd.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
		pfd.revents = 0;
		(void)poll(&pfd, 1, 100);
	}
	c->incap = CONN_READ_CHUNK * 2;
	if ((c->in = malloc(c->incap)) == NULL) {
		fprintf(stderr, "testpeer: out of memory\n");
		return -1;
	}
	return 0;
}

void
conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		if (!c->eof)
			(void)SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->ctx != NULL) {
		SSL_CTX_free(c->ctx);
		c->ctx = NULL;
	}
	if (c->fd != -1) {
		close(c->fd);
		c->fd = -1;
	}
	free(c->in);
	free(c->out);
	c->in = c->out = NULL;
}

int
conn_out_empty(const struct conn *c)
{
	return c->outoff == c->outlen;
}

uint8_t *
conn_out_reserve(struct conn *c, size_t n)
{
	uint8_t *p;

	if (conn_out_empty(c))
		c->outoff = c->outlen = 0;
	if (c->outlen + n > c->outcap) {
		size_t cap = c->outcap ? c->outcap : 65536;

		while (cap < c->outlen + n)
			cap *= 2;
		if ((p = realloc(c->out, cap)) == NULL) {
			fprintf(stderr, "testpeer: out of memory\n");
			exit(PEER_EXIT_FAIL);
		}
		c->out = p;
		c->outcap = cap;
	}
	p = c->out + c->outlen;
	c->outlen += n;
	return p;
}

void
conn_queue_frame(struct conn *c, const struct wire_hdr *h, const void *payload)
{
	uint8_t *p = conn_out_reserve(c, WIRE_HDR_SIZE + h->plen);

	wire_encode_hdr(p, h);
	if (h->plen > 0)
		memcpy(p + WIRE_HDR_SIZE, payload, h->plen);
}

void
conn_consume(struct conn *c, size_t n)
{
	if (n >= c->inlen) {
		c->inlen = 0;
		return;
	}
	memmove(c->in, c->in + n, c->inlen - n);
	c->inlen -= n;
}

/* The mirror is gone: record how. */
static void
conn_set_eof(struct conn *c, const char *how)
{
	if (!c->eof)
		snprintf(c->eofwhy, sizeof(c->eofwhy), "%s", how);
	c->eof = 1;
}

/* Classifies a failed SSL_read/SSL_write. Returns 0 (retry later), or 1
 * when the connection is over (c->eof set). */
static int
conn_ssl_fail(struct conn *c, int rc, const char *op)
{
	char err[512], how[700];
	int e = SSL_get_error(c->ssl, rc), saved = errno;

	switch (e) {
	case SSL_ERROR_WANT_READ:
		return 0;
	case SSL_ERROR_WANT_WRITE:
		c->want_write = 1;
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		conn_set_eof(c, "closed (TLS close_notify)");
		return 1;
	case SSL_ERROR_SYSCALL:
		conn_ssl_errors(err, sizeof(err));
		if (saved == 0 && err[0] == '\0')
			snprintf(how, sizeof(how), "closed (EOF)");
		else
			snprintf(how, sizeof(how), "closed (%s: %s)", op,
			    err[0] ? err : strerror(saved));
		conn_set_eof(c, how);
		return 1;
	default:
		conn_ssl_errors(err, sizeof(err));
		snprintf(how, sizeof(how), "closed (%s: TLS error: %s)", op,
		    err[0] ? err : "unknown");
		conn_set_eof(c, how);
		return 1;
	}
}

int
conn_pump(struct conn *c, int timeout_ms)
{
	struct pollfd pfd;
	int moved = 0, rc;
	size_t n;

	if (c->eof)
		return 0;
	/* Write: as much as the socket takes. */
	c->want_write = 0;
	while (!conn_out_empty(c)) {
		n = c->outlen - c->outoff;
		if (n > CONN_READ_CHUNK)
			n = CONN_READ_CHUNK;
		ERR_clear_error();
		rc = SSL_write(c->ssl, c->out + c->outoff, (int)n);
		if (rc <= 0) {
			if (conn_ssl_fail(c, rc, "write"))
				return 1;
			break;
		}
		c->outoff += (size_t)rc;
		moved = 1;
	}
	/* Read: everything there is, including what SSL buffered. */
	for (;;) {
		if (c->incap - c->inlen < CONN_READ_CHUNK) {
			uint8_t *p = realloc(c->in, c->incap * 2);

			if (p == NULL) {
				fprintf(stderr, "testpeer: out of memory\n");
				return -1;
			}
			c->in = p;
			c->incap *= 2;
		}
		ERR_clear_error();
		rc = SSL_read(c->ssl, c->in + c->inlen, CONN_READ_CHUNK);
		if (rc <= 0) {
			if (conn_ssl_fail(c, rc, "read"))
				return 1;
			break;
		}
		c->inlen += (size_t)rc;
		moved = 1;
		/* Let the caller parse before the buffer grows too far. */
		if (c->inlen > 4 * CONN_READ_CHUNK)
			break;
	}
	if (moved || timeout_ms == 0)
		return moved;
	pfd.fd = c->fd;
	pfd.events = POLLIN | (c->want_write ? POLLOUT : 0);
	pfd.revents = 0;
	if (poll(&pfd, 1, timeout_ms) == -1 && errno != EINTR) {
		fprintf(stderr, "testpeer: poll: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}
