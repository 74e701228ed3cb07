/*
 * tls.h: OpenSSL contexts for the replication link. TLS 1.3 minimum,
 * mutual authentication against the configured CA, and the peer's
 * certificate name checked against tls.peer_name (chain verification alone
 * would accept any certificate the CA ever signed).
 */
#ifndef DUET_TLS_H
#define DUET_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

struct config;

/* server: 1 for the mirror's listener, 0 for the primary's connector.
 * Returns NULL with a message (OpenSSL's queue drained into it) in err. */
SSL_CTX *tls_ctx_new(const struct config *cfg, int server, char *err,
    size_t errlen);

/* A new SSL for one connection, with the peer-name check armed. */
SSL *tls_ssl_new(SSL_CTX *ctx, const char *peer_name);

/* Logs "peer ADDR: WHAT: <each OpenSSL error>" and the verify result, then
 * clears the queue. ssl may be NULL. */
void tls_log_errors(const char *peer, const char *what, SSL *ssl);

#endif
