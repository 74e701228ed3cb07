/*
 * tls.c: OpenSSL contexts for the replication link (see tls.h).
 *
 * Why it is built this way: both ends authenticate each other. The CA in
 * tls.ca vouches for a certificate, and the certificate must also carry the
 * name in tls.peer_name: any other host the CA ever signed (the mirror of
 * another volume, a test machine) is otherwise a valid peer. The name check
 * is armed per connection in tls_ssl_new() through SSL_set1_host(), which
 * OpenSSL applies during chain verification on either side, so the mirror
 * checks the primary's client certificate exactly as the primary checks the
 * mirror's server certificate.
 *
 * No session resumption: the link is one long-lived connection, and a
 * resumed session would skip the checks above in favour of a cached result.
 *
 * An SSL_CTX is built once at start-up (or on reload) and shared read-only
 * by the connections made from it; the caller frees it with SSL_CTX_free.
 */
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/config.h"
#include "common/log.h"
#include "common/tls.h"

/*
 * Writes "OPTION FILE: [WHAT: ]WHY" into err, WHY being OpenSSL's error
 * queue, drained, its entries separated by "; ".
 */
static void
tls_errmsg(char *err, size_t errlen, const char *option, const char *file,
    const char *what)
{
	char line[256];
	unsigned long e;
	size_t n;
	int any = 0;

	if (errlen == 0) {
		ERR_clear_error();
		return;
	}
	snprintf(err, errlen, "%s %s: %s%s", option, file,
	    what != NULL ? what : "", what != NULL ? ": " : "");
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, line, sizeof(line));
		n = strlen(err);
		if (n + 1 < errlen)
			snprintf(err + n, errlen - n, "%s%s", any ? "; " : "",
			    line);
		any = 1;
	}
	n = strlen(err);
	if (!any && n + 1 < errlen)
		snprintf(err + n, errlen - n, "unknown error");
}

/*
 * A readable check before OpenSSL sees the file: "No such file or
 * directory" beats OpenSSL's "system library" chain for the common mistake.
 */
static int
tls_file_ok(const char *option, const char *file, char *err, size_t errlen)
{
	int fd;

	if (file[0] == '\0') {
		snprintf(err, errlen, "%s: not set", option);
		return 0;
	}
	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "%s %s: %s", option, file,
		    strerror(errno));
		return 0;
	}
	close(fd);
	return 1;
}

SSL_CTX *
tls_ctx_new(const struct config *cfg, int server, char *err, size_t errlen)
{
	static const unsigned char sid_ctx[] = "duet";
	unsigned long e;
	SSL_CTX *ctx;
	int mismatch;

	ERR_clear_error();
	if (!tls_file_ok("tls.ca", cfg->tls_ca, err, errlen) ||
	    !tls_file_ok("tls.cert", cfg->tls_cert, err, errlen) ||
	    !tls_file_ok("tls.key", cfg->tls_key, err, errlen))
		return NULL;

	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (ctx == NULL) {
		tls_errmsg(err, errlen, "tls", "context", "SSL_CTX_new");
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
		tls_errmsg(err, errlen, "tls", "context",
		    "cannot require TLS 1.3");
		goto fail;
	}
	if (!SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL)) {
		tls_errmsg(err, errlen, "tls.ca", cfg->tls_ca, NULL);
		goto fail;
	}
	if (!SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert)) {
		tls_errmsg(err, errlen, "tls.cert", cfg->tls_cert, NULL);
		goto fail;
	}
	/* OpenSSL 3 checks the key against the certificate while loading. */
	if (!SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) ||
	    !SSL_CTX_check_private_key(ctx)) {
		e = ERR_peek_last_error();
		mismatch = (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) ||
		    (ERR_GET_LIB(e) == ERR_LIB_SSL &&
		    ERR_GET_REASON(e) == SSL_R_PRIVATE_KEY_MISMATCH);
		tls_errmsg(err, errlen, "tls.key", cfg->tls_key,
		    mismatch ? "does not match tls.cert" : NULL);
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);

	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (server) {
		(void)SSL_CTX_set_num_tickets(ctx, 0);
		(void)SSL_CTX_set_session_id_context(ctx, sid_ctx,
		    sizeof(sid_ctx) - 1);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL *
tls_ssl_new(SSL_CTX *ctx, const char *peer_name)
{
	unsigned char addr[sizeof(struct in6_addr)];
	SSL *ssl;

	/* Without a name, SSL_set1_host would disarm the check: refuse. */
	if (peer_name == NULL || peer_name[0] == '\0')
		return NULL;
	if ((ssl = SSL_new(ctx)) == NULL)
		return NULL;
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	/* An IP literal is matched against the iPAddress SANs instead. */
	if (!SSL_set1_host(ssl, peer_name))
		goto fail;
	/* SNI for the client, except for IP literals (RFC 6066 3). */
	if (!SSL_is_server(ssl) &&
	    inet_pton(AF_INET, peer_name, addr) != 1 &&
	    inet_pton(AF_INET6, peer_name, addr) != 1 &&
	    !SSL_set_tlsext_host_name(ssl, peer_name))
		goto fail;
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

void
tls_log_errors(const char *peer, const char *what, SSL *ssl)
{
	const char *data;
	unsigned long e;
	long vr;
	int flags;
	char buf[256];

	if (peer == NULL)
		peer = "?";
	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		if (data != NULL && data[0] != '\0' && (flags & ERR_TXT_STRING))
			log_warnx("peer %s: %s: %s (%s)", peer, what, buf,
			    data);
		else
			log_warnx("peer %s: %s: %s", peer, what, buf);
	}
	if (ssl != NULL && (vr = SSL_get_verify_result(ssl)) != X509_V_OK)
		log_warnx("peer %s: certificate: %s", peer,
		    X509_verify_cert_error_string(vr));
}
