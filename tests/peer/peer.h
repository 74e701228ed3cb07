/*
 * peer.h: duet-testpeer, a fake primary for the mirror's integration tests
 * (Redis's tests/helpers/fake_redis_node.tcl in spirit). One process, one
 * thread, one TLS connection driven without blocking (poll + non-blocking
 * SSL), so acks are consumed while frames are still going out.
 *
 *   conn.c      TCP connect, TLS handshake, buffered non-blocking I/O
 *   testpeer.c  command line, hello, the honest random op stream and model
 *   hostile.c   the misbehaving kinds (--hostile)
 *
 * Note: the Makefile's header dependencies do not reach tests/peer/, so
 * touch the .c files after editing this header.
 */
#ifndef DUET_TESTPEER_H
#define DUET_TESTPEER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "proto/wire.h"

/* Exit codes. */
#define PEER_EXIT_OK		0
#define PEER_EXIT_FAIL		1
#define PEER_EXIT_USAGE		2
#define PEER_EXIT_REFUSED	3

#define PEER_MAX_PAYLOAD	(4u << 20)
#define PEER_ALIGN		512u

enum peer_frontier { FRONTIER_ACKED, FRONTIER_MAX, FRONTIER_RANDOM };

struct peer_opts {
	const char	*connect;	/* host:port */
	const char	*ca, *cert, *key, *peer_name;
	uint64_t	 size;
	uint32_t	 extent_size;
	uint8_t		 uuid[WIRE_UUID_LEN];
	int		 memsync;
	uint64_t	 seed;
	uint64_t	 ops;
	uint32_t	 max_len;
	enum peer_frontier frontier;
	int		 fill;		/* write the whole volume first */
	int		 no_cert;	/* TLS without a client certificate */
	int		 tls12;		/* offer TLS 1.2 only */
	const char	*image;		/* NULL: do not write the model */
	const char	*base;		/* NULL: the model starts all zero */
	const char	*hostile;	/* NULL: honest */
	const char	*expect_refusal;
	int		 timeout;	/* seconds to wait for the mirror */
	int		 verbose;
};

/*
 * One TLS connection. out holds bytes not yet written (out[outoff..outlen));
 * a caller may append only when it is drained (conn_out_empty), so a retried
 * SSL_write always sees the same bytes. in holds bytes read and not yet
 * consumed (in[0..inlen)).
 */
struct conn {
	int		 fd;
	SSL_CTX		*ctx;
	SSL		*ssl;
	char		 addr[300];

	uint8_t		*out;
	size_t		 outoff, outlen, outcap;
	int		 want_write;	/* SSL_write wants POLLOUT */

	uint8_t		*in;
	size_t		 inlen, incap;

	int		 eof;		/* the mirror closed (EOF, reset, alert) */
	char		 eofwhy[1024];	/* how it closed */
};

int	 conn_open(struct conn *c, const struct peer_opts *o);
/* TCP only, no TLS (c->ssl stays NULL; use the fd directly). */
int	 conn_open_tcp(struct conn *c, const char *hostport);
void	 conn_close(struct conn *c);
/* Reserves n bytes at the end of out and returns them; out must be empty. */
uint8_t	*conn_out_reserve(struct conn *c, size_t n);
int	 conn_out_empty(const struct conn *c);
/* Queues one frame: a header and plen bytes of payload (may be NULL if 0). */
void	 conn_queue_frame(struct conn *c, const struct wire_hdr *h,
	    const void *payload);
/*
 * Writes what it can, reads what there is; waits up to timeout_ms when
 * neither moved. Returns 1 if anything moved, 0 if not, -1 on a local or
 * TLS error (message printed). Sets c->eof when the mirror is gone.
 */
int	 conn_pump(struct conn *c, int timeout_ms);
/* Drops n consumed bytes from the front of in. */
void	 conn_consume(struct conn *c, size_t n);

uint64_t peer_now_ms(void);
void	 peer_hello_fill(struct wire_hello *h, const struct peer_opts *o);
/* Sends the hello and waits for the HELLO_ACK. Returns 0 accepted, 3
 * refused (reason in why), 1 on error (printed). */
int	 peer_hello(struct conn *c, const struct peer_opts *o, char *why,
	    size_t whylen);
int	 hostile_run(const struct peer_opts *o);

#endif
