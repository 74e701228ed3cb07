/*
 * hostile.c: duet-testpeer --hostile KIND. Each kind connects with valid
 * TLS credentials, misbehaves once, then only reads: the mirror must close
 * the connection (EOF, reset, alert; a GOODBYE before it is printed to
 * stdout). Exit 0 when it did within --timeout seconds, 1 when it kept the
 * connection open or something else went wrong, 3 when a kind that needs an
 * accepted hello was refused.
 *
 *   garbage     random bytes instead of a hello (bad magic)
 *   badversion  a HELLO whose header says version 99
 *   half        half a hello header, then silence (hello timeout)
 *   oversized   hello, then a WRITE header with plen = length = 1 GiB
 *   offset      hello, then a WRITE at offset = volume size
 *   misaligned  hello, then a WRITE at offset 100
 *   noseq       hello, then two WRITEs with the same seq: 4 KiB of 0xa5 at
 *               offset 0 (valid; we wait for its ACK APPLIED), then 4 KiB
 *               at 4096 (must be refused, never applied)
 *   frontier    hello, then a WRITE (seq 2, 4 KiB at 8192) whose frontier 5
 *               is not below its seq
 *   plaintext   no TLS at all: an HTTP request in the clear
 *   byepaused   hello, then a 4 MiB WRITE of 0xa5 at 0 and a GOODBYE in one
 *               burst: with primary.max_inflight_bytes under 4 MiB the
 *               mirror pauses reading after the WRITE, and takes up the
 *               GOODBYE, already read, once the WRITE is applied
 */
#include <sys/socket.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "tests/peer/peer.h"

#define GIB	(UINT32_C(1) << 30)

enum hostile_kind {
	H_GARBAGE, H_BADVERSION, H_HALF, H_OVERSIZED, H_OFFSET, H_MISALIGNED,
	H_NOSEQ, H_FRONTIER, H_PLAINTEXT, H_SILENT, H_BYEPAUSED
};

static const struct {
	const char		*hk_name;
	enum hostile_kind	 hk_kind;
	int			 hk_hello;	/* needs an accepted hello first */
} hostile_kinds[] = {
	{ "garbage", H_GARBAGE, 0 },
	{ "badversion", H_BADVERSION, 0 },
	{ "half", H_HALF, 0 },
	{ "oversized", H_OVERSIZED, 1 },
	{ "offset", H_OFFSET, 1 },
	{ "misaligned", H_MISALIGNED, 1 },
	{ "noseq", H_NOSEQ, 1 },
	{ "frontier", H_FRONTIER, 1 },
	{ "plaintext", H_PLAINTEXT, 0 },
	{ "silent", H_SILENT, 1 },
	{ "byepaused", H_BYEPAUSED, 1 },
};
#define NKINDS	(sizeof(hostile_kinds) / sizeof(hostile_kinds[0]))

/* Queues a WRITE of len bytes of 0xa5 at off, numbered seq. */
static void
hostile_write(struct conn *c, uint64_t seq, uint64_t frontier, uint64_t off,
    uint32_t len)
{
	struct wire_hdr h;
	uint8_t *p;

	memset(&h, 0, sizeof(h));
	h.type = WIRE_WRITE;
	h.seq = seq;
	h.frontier = frontier;
	h.offset = off;
	h.length = len;
	h.plen = len;
	p = conn_out_reserve(c, WIRE_HDR_SIZE + len);
	wire_encode_hdr(p, &h);
	memset(p + WIRE_HDR_SIZE, 0xa5, len);
}

/* Prints what the mirror sends while we wait for it to hang up. */
static void
hostile_input(struct conn *c, const struct peer_opts *o, int *bad)
{
	struct wire_limits lim = { PEER_MAX_PAYLOAD, o->size, 1 };
	struct wire_hdr h;
	int rc;

	while (!*bad && c->inlen >= WIRE_HDR_SIZE) {
		if ((rc = wire_decode_hdr(c->in, c->inlen, &lim, &h)) !=
		    WIRE_OK) {
			printf("mirror sent a frame we cannot decode: %s\n",
			    wire_strerror(rc));
			*bad = 1;
			return;
		}
		if (c->inlen < WIRE_HDR_SIZE + (size_t)h.plen)
			return;
		if (h.type == WIRE_GOODBYE)
			printf("goodbye: %.*s\n", (int)h.plen,
			    (const char *)c->in + WIRE_HDR_SIZE);
		else if (o->verbose)
			printf("mirror sent %s seq %" PRIu64 " flags %#" PRIx32
			    "\n", wire_type_name(h.type), h.seq, h.flags);
		conn_consume(c, WIRE_HDR_SIZE + h.plen);
	}
}

/* Waits for ACK APPLIED of seq (other frames are skipped). */
static int
hostile_wait_applied(struct conn *c, const struct peer_opts *o, uint64_t seq)
{
	struct wire_limits lim = { PEER_MAX_PAYLOAD, o->size, 1 };
	struct wire_hdr h;
	uint64_t deadline = peer_now_ms() + (uint64_t)o->timeout * 1000;
	int rc;

	for (;;) {
		while (c->inlen >= WIRE_HDR_SIZE) {
			if ((rc = wire_decode_hdr(c->in, c->inlen, &lim, &h)) !=
			    WIRE_OK) {
				fprintf(stderr, "testpeer: bad frame from the "
				    "mirror: %s\n", wire_strerror(rc));
				return -1;
			}
			if (c->inlen < WIRE_HDR_SIZE + (size_t)h.plen)
				break;
			conn_consume(c, WIRE_HDR_SIZE + h.plen);
			if (h.type == WIRE_ACK && h.seq == seq &&
			    WIRE_ACK_KIND(h.flags) == WIRE_ACK_APPLIED) {
				if (WIRE_ACK_STATUS(h.flags) != 0) {
					fprintf(stderr, "testpeer: seq %" PRIu64
					    " acked with status %u\n", seq,
					    (unsigned)WIRE_ACK_STATUS(h.flags));
					return -1;
				}
				return 0;
			}
		}
		if (c->eof) {
			fprintf(stderr, "testpeer: mirror %s before acking the "
			    "valid WRITE seq %" PRIu64 "\n", c->eofwhy, seq);
			return -1;
		}
		if (peer_now_ms() >= deadline) {
			fprintf(stderr, "testpeer: no ACK APPLIED for the valid "
			    "WRITE seq %" PRIu64 " within %d s\n", seq,
			    o->timeout);
			return -1;
		}
		if (conn_pump(c, 100) == -1)
			return -1;
	}
}

/* --hostile plaintext: no TLS; the mirror must hang up on us. */
static int
hostile_plaintext(const struct peer_opts *o)
{
	static const char req[] = "GET / HTTP/1.0\r\nHost: duet\r\n\r\n";
	struct conn c;
	struct pollfd pfd;
	uint8_t buf[4096];
	uint64_t start, deadline, got = 0;
	ssize_t n;
	int ret = PEER_EXIT_FAIL;

	if (conn_open_tcp(&c, o->connect) == -1)
		return PEER_EXIT_FAIL;
	if (send(c.fd, req, sizeof(req) - 1, MSG_NOSIGNAL) !=
	    (ssize_t)sizeof(req) - 1) {
		fprintf(stderr, "testpeer: send: %s\n", strerror(errno));
		goto out;
	}
	start = peer_now_ms();
	deadline = start + (uint64_t)o->timeout * 1000;
	while (peer_now_ms() < deadline) {
		pfd.fd = c.fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		if ((n = read(c.fd, buf, sizeof(buf))) > 0) {
			got += (uint64_t)n;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			continue;
		printf("hostile plaintext: mirror closed (%s) after %" PRIu64
		    " ms, having sent %" PRIu64 " bytes\n",
		    n == 0 ? "EOF" : strerror(errno), peer_now_ms() - start,
		    got);
		ret = PEER_EXIT_OK;
		goto out;
	}
	fprintf(stderr, "testpeer: hostile plaintext: the mirror kept the "
	    "connection open for %d s\n", o->timeout);
out:
	close(c.fd);
	return ret;
}

int
hostile_run(const struct peer_opts *o)
{
	uint8_t payload[WIRE_HELLO_SIZE], full[WIRE_HDR_SIZE], *p;
	char why[WIRE_REASON_MAX + 64];
	struct wire_hello hello;
	struct wire_hdr h;
	struct conn c;
	uint64_t start, deadline;
	size_t i;
	int rc, bad = 0, ret = PEER_EXIT_FAIL;
	enum hostile_kind kind = H_GARBAGE;

	for (i = 0; i < NKINDS; i++)
		if (strcmp(o->hostile, hostile_kinds[i].hk_name) == 0)
			break;
	if (i == NKINDS) {
		fprintf(stderr, "testpeer: --hostile %s: unknown kind (garbage, "
		    "badversion, half, oversized, offset, misaligned, noseq, "
		    "frontier, plaintext, silent)\n", o->hostile);
		return PEER_EXIT_USAGE;
	}
	kind = hostile_kinds[i].hk_kind;
	if (kind == H_PLAINTEXT)
		return hostile_plaintext(o);

	if (conn_open(&c, o) == -1)
		goto out;
	if (hostile_kinds[i].hk_hello) {
		rc = peer_hello(&c, o, why, sizeof(why));
		if (rc == PEER_EXIT_REFUSED) {
			fprintf(stderr, "refused: %s\n", why);
			ret = rc;
			goto out;
		}
		if (rc != PEER_EXIT_OK)
			goto out;
	}

	memset(&h, 0, sizeof(h));
	switch (kind) {
	case H_GARBAGE:
		p = conn_out_reserve(&c, 1024);
		if (RAND_bytes(p, 1024) != 1) {
			fprintf(stderr, "testpeer: RAND_bytes failed\n");
			goto out;
		}
		p[0] = 0xff;	/* never a valid magic */
		break;
	case H_BADVERSION:
		peer_hello_fill(&hello, o);
		wire_encode_hello(payload, &hello);
		h.version = 99;
		h.type = WIRE_HELLO;
		h.plen = WIRE_HELLO_SIZE;
		conn_queue_frame(&c, &h, payload);
		break;
	case H_HALF:
		h.type = WIRE_HELLO;
		h.plen = WIRE_HELLO_SIZE;
		wire_encode_hdr(full, &h);
		memcpy(conn_out_reserve(&c, WIRE_HDR_SIZE / 2), full,
		    WIRE_HDR_SIZE / 2);
		break;
	case H_OVERSIZED:
		/* The header alone: the mirror must not wait for 1 GiB. */
		h.type = WIRE_WRITE;
		h.seq = 1;
		h.length = GIB;
		h.plen = GIB;
		wire_encode_hdr(conn_out_reserve(&c, WIRE_HDR_SIZE), &h);
		break;
	case H_OFFSET:
		hostile_write(&c, 1, 0, o->size, 4096);
		break;
	case H_MISALIGNED:
		hostile_write(&c, 1, 0, 100, 4096);
		break;
	case H_PLAINTEXT:
		break;		/* handled above */
	case H_NOSEQ:
		/* The first is valid: wait until it is applied, so the test
		 * knows the volume's state; the second must be refused. */
		hostile_write(&c, 1, 0, 0, 4096);
		if (hostile_wait_applied(&c, o, 1) == -1)
			goto out;
		hostile_write(&c, 1, 0, 4096, 4096);
		break;
	case H_FRONTIER:
		hostile_write(&c, 2, 5, 8192, 4096);
		break;
	case H_SILENT:
		break;		/* nothing after the hello: mirror.idle_timeout */
	case H_BYEPAUSED:
		hostile_write(&c, 1, 0, 0, PEER_MAX_PAYLOAD);
		h.type = WIRE_GOODBYE;
		conn_queue_frame(&c, &h, NULL);
		break;
	}

	start = peer_now_ms();
	deadline = start + (uint64_t)o->timeout * 1000;
	while (!c.eof && peer_now_ms() < deadline) {
		if (conn_pump(&c, 100) == -1)
			goto out;
		hostile_input(&c, o, &bad);
	}
	hostile_input(&c, o, &bad);
	if (!c.eof) {
		fprintf(stderr, "testpeer: hostile %s: the mirror kept the "
		    "connection open for %d s\n", o->hostile, o->timeout);
		goto out;
	}
	printf("hostile %s: mirror %s after %" PRIu64 " ms\n", o->hostile,
	    c.eofwhy, peer_now_ms() - start);
	ret = bad ? PEER_EXIT_FAIL : PEER_EXIT_OK;
out:
	conn_close(&c);
	return ret;
}
