/*
 * testpeer.c: duet-testpeer, a fake primary that drives duet-mirror (see
 * peer.h for the file layout).
 *
 * Honest mode: hello, then --ops seeded random operations (WRITE with
 * random data, WRITE_ZEROES, TRIM, FLUSH; FUA now and then), numbered
 * 1, 2, 3, ..., at most PEER_WINDOW of them not yet acked APPLIED. Each
 * carries the frontier: by default the highest S such that every op <= S
 * has been acked APPLIED (--frontier: see stream_frontier). A PING goes
 * first and after every PEER_PING_EVERY ops; each wants its PONG, and the
 * mirror's PINGs are answered. Every op is applied to an in-memory model
 * image when it is
 * sent, so the model is the image of applying the ops one by one in
 * sequence order (DESIGN.md invariant 4); at the end a FLUSH, a GOODBYE,
 * and the model goes to --image for the test to cmp with the mirror's
 * volume. Every frame from the mirror passes wire_decode_hdr, and every ack
 * is checked: its kind (RECEIVED only if asked, and before APPLIED), status
 * 0, once per kind per op, only for ops that were sent.
 *
 * With --fill the stream starts by writing the whole volume front to back,
 * so the final image does not depend on what the mirror held before (a
 * run after a crash or a killed session).
 *
 * The op stream depends on --seed, --ops, --size, --max-len and --fill
 * only, never on timing, so a run can be repeated exactly.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/config.h"
#include "tests/peer/peer.h"

#define PEER_WINDOW	256		/* ops not yet acked APPLIED, at most */
#define PEER_PING_EVERY	500		/* a PING after every this many ops */
#define MIB		(UINT64_C(1) << 20)
#define HOT_SIZE	(4 * MIB)	/* where most overlaps happen */

/* Per-op ack state, by seq. */
#define OP_SENT		0x01
#define OP_RECEIVED	0x02
#define OP_APPLIED	0x04
#define OP_FLUSH	0x08

struct stream {
	const struct peer_opts *s_o;
	struct conn	*s_c;
	uint8_t		*s_model;	/* --size bytes */
	uint8_t		*s_state;	/* OP_*, index seq, 1..s_last */
	uint64_t	 s_last;	/* seq of the final FLUSH */
	uint64_t	 s_nfill;	/* --fill: the first ops write it all */
	uint64_t	 s_fill_off;
	uint64_t	 s_next;	/* next seq to send */
	uint64_t	 s_frontier;	/* all ops <= this acked APPLIED */
	uint64_t	 s_sent_frontier;	/* the last frontier sent */
	uint64_t	 s_frng;	/* --frontier random */
	uint64_t	 s_applied;	/* APPLIED acks seen */
	uint64_t	 s_rng;
	uint32_t	 s_max_len;
	int		 s_pings, s_pongs;
	int		 s_pong_due;	/* PINGs from the mirror to answer */
	int		 s_goodbye_sent;
	int		 s_mirror_bye;	/* the mirror said GOODBYE first */
	uint64_t	 s_applied_at_bye;
	uint64_t	 s_last_progress;	/* ms, last ack or pong */
	/* counters for the summary */
	uint64_t	 s_nwrite, s_nzero, s_ntrim, s_nflush, s_nfua;
	uint64_t	 s_bytes;
};

static void
usage(void)
{
	fprintf(stderr,
"usage: duet-testpeer --connect HOST:PORT --ca F --cert F --key F\n"
"           --peer-name NAME --size BYTES [--extent-size 65536]\n"
"           [--uuid HEX32] [--mode sync|memsync] [--seed N] [--ops N]\n"
"           [--max-len BYTES] [--frontier acked|max|random] [--base IN]\n"
"           [--fill] [--image OUT] [--timeout SECS] [--no-cert] [--tls12]\n"
"           [--hostile garbage|badversion|half|oversized|offset|misaligned|\n"
"                      noseq|frontier|plaintext|silent|byepaused]\n"
"           [--expect-refusal SUBSTRING] [-v]\n"
"exit: 0 ok, 1 protocol/ack error, 2 usage, 3 refused by the mirror\n");
	exit(PEER_EXIT_USAGE);
}

/* splitmix64: small, seedable, good enough for test data. */
static uint64_t
rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint64_t
rng_below(uint64_t *s, uint64_t n)
{
	return n == 0 ? 0 : rng_next(s) % n;
}

static void
rng_fill(uint64_t *s, uint8_t *p, size_t n)
{
	uint64_t v;
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		v = rng_next(s);
		memcpy(p + i, &v, 8);
	}
	if (i < n) {
		v = rng_next(s);
		memcpy(p + i, &v, n - i);
	}
}

static int
parse_u64(const char *opt, const char *s, uint64_t *out)
{
	if (config_parse_size(s, out) == -1) {
		fprintf(stderr, "testpeer: %s %s: not a number (K/M/G/T "
		    "suffixes allowed)\n", opt, s);
		return -1;
	}
	return 0;
}

static int
parse_uuid(const char *s, uint8_t *uuid)
{
	size_t i, n = 0;
	int hi = -1, v;

	for (i = 0; s[i] != '\0'; i++) {
		char ch = s[i];

		if (ch == '-')
			continue;
		if (ch >= '0' && ch <= '9')
			v = ch - '0';
		else if (ch >= 'a' && ch <= 'f')
			v = ch - 'a' + 10;
		else if (ch >= 'A' && ch <= 'F')
			v = ch - 'A' + 10;
		else
			return -1;
		if (hi == -1)
			hi = v;
		else {
			if (n == WIRE_UUID_LEN)
				return -1;
			uuid[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	return n == WIRE_UUID_LEN && hi == -1 ? 0 : -1;
}

void
peer_hello_fill(struct wire_hello *h, const struct peer_opts *o)
{
	memset(h, 0, sizeof(*h));
	h->proto_version = WIRE_VERSION;
	h->capabilities = WIRE_CAP_ACK_APPLIED |
	    (o->memsync ? WIRE_CAP_ACK_RECEIVED : 0);
	memcpy(h->uuid, o->uuid, WIRE_UUID_LEN);
	h->volume_size = o->size;
	h->extent_size = o->extent_size;
	h->max_payload = PEER_MAX_PAYLOAD;
}

/* Limits for what the mirror sends us. */
static void
peer_limits(struct wire_limits *lim, const struct peer_opts *o)
{
	lim->max_payload = PEER_MAX_PAYLOAD;
	lim->volume_size = o->size;
	lim->align = PEER_ALIGN;
}

int
peer_hello(struct conn *c, const struct peer_opts *o, char *why, size_t whylen)
{
	uint8_t payload[WIRE_HELLO_SIZE];
	struct wire_hello h, ack;
	struct wire_hdr hdr;
	struct wire_limits lim;
	uint64_t deadline;
	int rc;

	peer_hello_fill(&h, o);
	wire_encode_hello(payload, &h);
	memset(&hdr, 0, sizeof(hdr));
	hdr.type = WIRE_HELLO;
	hdr.plen = WIRE_HELLO_SIZE;
	conn_queue_frame(c, &hdr, payload);
	peer_limits(&lim, o);
	why[0] = '\0';

	deadline = peer_now_ms() + (uint64_t)o->timeout * 1000;
	for (;;) {
		if (c->inlen >= WIRE_HDR_SIZE) {
			rc = wire_decode_hdr(c->in, c->inlen, &lim, &hdr);
			if (rc != WIRE_OK) {
				fprintf(stderr, "testpeer: bad frame from the "
				    "mirror instead of HELLO_ACK: %s\n",
				    wire_strerror(rc));
				return PEER_EXIT_FAIL;
			}
			if (c->inlen >= WIRE_HDR_SIZE + (size_t)hdr.plen)
				break;
		}
		if (c->eof) {
			fprintf(stderr, "testpeer: mirror %s before its "
			    "HELLO_ACK: %s\n", c->addr, c->eofwhy);
			return PEER_EXIT_FAIL;
		}
		if (peer_now_ms() >= deadline) {
			fprintf(stderr, "testpeer: no HELLO_ACK from %s "
			    "within %d s\n", c->addr, o->timeout);
			return PEER_EXIT_FAIL;
		}
		if (conn_pump(c, 100) == -1)
			return PEER_EXIT_FAIL;
	}
	if (hdr.type == WIRE_GOODBYE) {
		snprintf(why, whylen, "GOODBYE instead of HELLO_ACK: %.*s",
		    (int)hdr.plen, (const char *)c->in + WIRE_HDR_SIZE);
		fprintf(stderr, "testpeer: mirror sent %s\n", why);
		return PEER_EXIT_FAIL;
	}
	if (hdr.type != WIRE_HELLO_ACK) {
		fprintf(stderr, "testpeer: mirror sent %s instead of "
		    "HELLO_ACK\n", wire_type_name(hdr.type));
		return PEER_EXIT_FAIL;
	}
	if (wire_decode_hello(c->in + WIRE_HDR_SIZE, hdr.plen, &ack) !=
	    WIRE_OK) {
		fprintf(stderr, "testpeer: malformed HELLO_ACK payload\n");
		return PEER_EXIT_FAIL;
	}
	conn_consume(c, WIRE_HDR_SIZE + hdr.plen);
	if (ack.status != 0) {
		snprintf(why, whylen, "%s", ack.reason[0] ? ack.reason :
		    strerror(ack.status));
		return PEER_EXIT_REFUSED;
	}
	if (ack.proto_version != WIRE_VERSION) {
		fprintf(stderr, "testpeer: HELLO_ACK accepts with protocol "
		    "version %" PRIu32 ", expected %d\n", ack.proto_version,
		    WIRE_VERSION);
		return PEER_EXIT_FAIL;
	}
	/* The mirror's change record follows (CR_XFER ... LAST): this peer
	 * keeps no record of its own, so it only checks the framing. */
	for (;;) {
		while (c->inlen < WIRE_HDR_SIZE ||
		    (wire_decode_hdr(c->in, c->inlen, &lim, &hdr) == WIRE_OK &&
		    c->inlen < WIRE_HDR_SIZE + (size_t)hdr.plen)) {
			if (c->eof || peer_now_ms() >= deadline) {
				fprintf(stderr, "testpeer: no change record "
				    "from %s after HELLO_ACK\n", c->addr);
				return PEER_EXIT_FAIL;
			}
			if (conn_pump(c, 100) == -1)
				return PEER_EXIT_FAIL;
		}
		if ((rc = wire_decode_hdr(c->in, c->inlen, &lim, &hdr)) !=
		    WIRE_OK || hdr.type != WIRE_CR_XFER) {
			fprintf(stderr, "testpeer: %s instead of the change "
			    "record\n", rc != WIRE_OK ? wire_strerror(rc) :
			    wire_type_name(hdr.type));
			return PEER_EXIT_FAIL;
		}
		conn_consume(c, WIRE_HDR_SIZE + hdr.plen);
		if (hdr.flags & WIRE_F_LAST)
			break;
	}
	if (o->verbose)
		fprintf(stderr, "testpeer: hello accepted (mirror max_payload "
		    "%" PRIu32 ", size %" PRIu64 ")\n", ack.max_payload,
		    ack.volume_size);
	if (ack.max_payload != 0 && ack.max_payload < o->max_len) {
		fprintf(stderr, "testpeer: mirror max_payload %" PRIu32
		    " < --max-len %" PRIu32 "\n", ack.max_payload, o->max_len);
		return PEER_EXIT_FAIL;
	}
	return PEER_EXIT_OK;
}

/* Sends a GOODBYE and waits (bounded) for it to leave. */
static void
peer_goodbye(struct conn *c, const struct peer_opts *o, const char *reason)
{
	struct wire_hdr h;
	uint64_t deadline = peer_now_ms() + (uint64_t)o->timeout * 1000;

	memset(&h, 0, sizeof(h));
	h.type = WIRE_GOODBYE;
	h.plen = (uint32_t)strlen(reason);
	conn_queue_frame(c, &h, reason);
	while (!conn_out_empty(c) && !c->eof && peer_now_ms() < deadline)
		if (conn_pump(c, 100) == -1)
			break;
}

/*
 * The frontier for op seq, per --frontier, never below the last one sent:
 *   acked   every op <= F acked APPLIED (the mirror never has to wait)
 *   max     seq - 1: as if every earlier op had completed on the primary
 *           (async mode at rest); the mirror must apply in order
 *   random  somewhere in [last, seq - 1], mostly close behind seq
 * Its own generator, so the op stream is the same in every mode.
 */
static uint64_t
stream_frontier(struct stream *s, uint64_t seq)
{
	uint64_t f;

	switch (s->s_o->frontier) {
	case FRONTIER_MAX:
		f = seq - 1;
		break;
	case FRONTIER_RANDOM:
		f = rng_below(&s->s_frng, 400);
		f = f < seq ? seq - 1 - f : 0;
		break;
	default:
		f = s->s_frontier;
		break;
	}
	if (f < s->s_sent_frontier)
		f = s->s_sent_frontier;
	s->s_sent_frontier = f;
	return f;
}

/* Generates the next op into the connection's output and the model. */
static void
stream_gen(struct stream *s)
{
	const struct peer_opts *o = s->s_o;
	struct wire_hdr h;
	uint64_t r, off, len, maxb, b;
	uint8_t *p;

	memset(&h, 0, sizeof(h));
	h.seq = s->s_next++;
	h.frontier = stream_frontier(s, h.seq);
	if (h.seq <= s->s_nfill) {
		/* --fill: the whole volume, front to back, then random ops. */
		h.type = WIRE_WRITE;
		h.offset = s->s_fill_off;
		h.length = o->size - h.offset < s->s_max_len ?
		    o->size - h.offset : s->s_max_len;
		h.plen = (uint32_t)h.length;
		p = conn_out_reserve(s->s_c, WIRE_HDR_SIZE + h.length);
		wire_encode_hdr(p, &h);
		rng_fill(&s->s_rng, p + WIRE_HDR_SIZE, h.length);
		memcpy(s->s_model + h.offset, p + WIRE_HDR_SIZE, h.length);
		s->s_fill_off += h.length;
		s->s_nwrite++;
		s->s_bytes += h.length;
		s->s_state[h.seq] = OP_SENT;
		return;
	}
	r = rng_below(&s->s_rng, 100);
	if (r < 3)
		h.type = WIRE_FLUSH;
	else if (r < 13)
		h.type = WIRE_WRITE_ZEROES;
	else if (r < 23)
		h.type = WIRE_TRIM;
	else
		h.type = WIRE_WRITE;

	if (h.type == WIRE_FLUSH) {
		s->s_state[h.seq] = OP_SENT | OP_FLUSH;
		s->s_nflush++;
		conn_queue_frame(s->s_c, &h, NULL);
		return;
	}

	/*
	 * Length: half small, half up to the maximum; zeroing and trimming
	 * (no payload) up to 4 MiB, across several 1 MiB ranges.
	 */
	maxb = s->s_max_len / PEER_ALIGN;
	if (h.type != WIRE_WRITE && maxb < 4 * MIB / PEER_ALIGN)
		maxb = 4 * MIB / PEER_ALIGN;
	if (rng_below(&s->s_rng, 2) == 0)
		len = PEER_ALIGN * (1 + rng_below(&s->s_rng, 16));
	else
		len = PEER_ALIGN * (1 + rng_below(&s->s_rng, maxb));
	if (len > maxb * PEER_ALIGN)
		len = maxb * PEER_ALIGN;

	/* Offset: a hot area (overlaps), across a 1 MiB boundary, anywhere. */
	r = rng_below(&s->s_rng, 10);
	if (r < 4) {
		b = (o->size < HOT_SIZE ? o->size : HOT_SIZE) / PEER_ALIGN;
		off = PEER_ALIGN * rng_below(&s->s_rng, b);
	} else if (r < 6 && o->size > 2 * MIB) {
		if (len < 2 * PEER_ALIGN)
			len = 2 * PEER_ALIGN;
		b = MIB * (1 + rng_below(&s->s_rng, o->size / MIB - 1));
		/* Start up to len (or b) before b: the span covers b. */
		off = b - PEER_ALIGN * (1 + rng_below(&s->s_rng,
		    (len < b ? len : b) / PEER_ALIGN - 1));
	} else
		off = PEER_ALIGN * rng_below(&s->s_rng, o->size / PEER_ALIGN);
	if (off + len > o->size)
		len = o->size - off;
	h.offset = off;
	h.length = len;

	switch (h.type) {
	case WIRE_WRITE:
		if (rng_below(&s->s_rng, 10) == 0) {
			h.flags |= WIRE_F_FUA;
			s->s_nfua++;
		}
		h.plen = (uint32_t)len;
		p = conn_out_reserve(s->s_c, WIRE_HDR_SIZE + len);
		wire_encode_hdr(p, &h);
		rng_fill(&s->s_rng, p + WIRE_HDR_SIZE, len);
		memcpy(s->s_model + off, p + WIRE_HDR_SIZE, len);
		s->s_nwrite++;
		s->s_bytes += len;
		break;
	case WIRE_WRITE_ZEROES:
		r = rng_below(&s->s_rng, 10);
		if (r == 0) {
			h.flags |= WIRE_F_FUA;
			s->s_nfua++;
		} else if (r == 1)
			h.flags |= WIRE_F_NO_HOLE;
		memset(s->s_model + off, 0, len);
		conn_queue_frame(s->s_c, &h, NULL);
		s->s_nzero++;
		break;
	default:
		memset(s->s_model + off, 0, len);
		conn_queue_frame(s->s_c, &h, NULL);
		s->s_ntrim++;
		break;
	}
	s->s_state[h.seq] = OP_SENT;
}

/* Checks one ACK. Returns 0 or -1 (printed). */
static int
stream_ack(struct stream *s, const struct wire_hdr *h)
{
	unsigned kind = WIRE_ACK_KIND(h->flags);
	unsigned status = WIRE_ACK_STATUS(h->flags);
	const char *kname = kind == WIRE_ACK_APPLIED ? "APPLIED" : "RECEIVED";
	uint8_t *st;

	if (h->seq == 0 || h->seq >= s->s_next) {
		fprintf(stderr, "testpeer: ACK %s for seq %" PRIu64 ", which "
		    "was never sent (last sent %" PRIu64 ")\n", kname, h->seq,
		    s->s_next - 1);
		return -1;
	}
	st = &s->s_state[h->seq];
	if (status != 0) {
		fprintf(stderr, "testpeer: ACK %s for seq %" PRIu64 " has "
		    "status %u (%s)\n", kname, h->seq, status,
		    strerror((int)status));
		return -1;
	}
	if (kind == WIRE_ACK_RECEIVED) {
		if (!s->s_o->memsync) {
			fprintf(stderr, "testpeer: ACK RECEIVED for seq %"
			    PRIu64 ", but the hello did not ask for RECEIVED "
			    "acks\n", h->seq);
			return -1;
		}
		if (*st & OP_RECEIVED) {
			fprintf(stderr, "testpeer: second ACK RECEIVED for "
			    "seq %" PRIu64 "\n", h->seq);
			return -1;
		}
		if (*st & OP_APPLIED) {
			fprintf(stderr, "testpeer: ACK RECEIVED for seq %"
			    PRIu64 " after its ACK APPLIED\n", h->seq);
			return -1;
		}
		*st |= OP_RECEIVED;
		return 0;
	}
	if (*st & OP_APPLIED) {
		fprintf(stderr, "testpeer: second ACK APPLIED for seq %" PRIu64
		    "\n", h->seq);
		return -1;
	}
	if (s->s_o->memsync && !(*st & OP_RECEIVED)) {
		fprintf(stderr, "testpeer: ACK APPLIED for seq %" PRIu64
		    " without an ACK RECEIVED before it (memsync)\n", h->seq);
		return -1;
	}
	*st |= OP_APPLIED;
	s->s_applied++;
	while (s->s_frontier + 1 < s->s_next &&
	    (s->s_state[s->s_frontier + 1] & OP_APPLIED))
		s->s_frontier++;
	return 0;
}

/* Handles every complete frame in the input. Returns 0 or -1 (printed). */
static int
stream_input(struct stream *s)
{
	struct conn *c = s->s_c;
	struct wire_limits lim;
	struct wire_hdr h;
	int rc;

	peer_limits(&lim, s->s_o);
	while (c->inlen >= WIRE_HDR_SIZE) {
		if ((rc = wire_decode_hdr(c->in, c->inlen, &lim, &h)) !=
		    WIRE_OK) {
			fprintf(stderr, "testpeer: bad frame from the mirror: "
			    "%s\n", wire_strerror(rc));
			return -1;
		}
		if (c->inlen < WIRE_HDR_SIZE + (size_t)h.plen)
			break;
		switch (h.type) {
		case WIRE_ACK:
			if (stream_ack(s, &h) == -1)
				return -1;
			s->s_last_progress = peer_now_ms();
			break;
		case WIRE_PING:
			if (h.flags & WIRE_F_PONG) {
				if (s->s_pongs >= s->s_pings) {
					fprintf(stderr, "testpeer: PONG "
					    "without a PING\n");
					return -1;
				}
				s->s_pongs++;
				s->s_last_progress = peer_now_ms();
			} else
				s->s_pong_due++;	/* sent when the output drains */
			break;
		case WIRE_GOODBYE:
			/* Theirs, unasked: the run fails, but read on to
			 * see what the mirror still sends before it closes. */
			if (!s->s_goodbye_sent && !s->s_mirror_bye) {
				fprintf(stderr, "testpeer: mirror said "
				    "GOODBYE: %.*s\n", (int)h.plen,
				    (const char *)c->in + WIRE_HDR_SIZE);
				s->s_mirror_bye = 1;
				s->s_applied_at_bye = s->s_applied;
			}
			break;
		default:
			fprintf(stderr, "testpeer: unexpected %s frame from the "
			    "mirror (seq %" PRIu64 ")\n",
			    wire_type_name(h.type), h.seq);
			return -1;
		}
		conn_consume(c, WIRE_HDR_SIZE + h.plen);
	}
	return 0;
}

/*
 * Writes the model to path, sparse: all-zero 64 KiB blocks become holes,
 * so a large, mostly untouched volume costs little disk.
 */
static int
write_file(const char *path, const uint8_t *p, uint64_t n)
{
	static const uint8_t zero[65536];
	uint64_t off, len;
	ssize_t w;
	int fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) == -1) {
		fprintf(stderr, "testpeer: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (off = 0; off < n; off += len) {
		len = n - off < sizeof(zero) ? n - off : sizeof(zero);
		if (memcmp(p + off, zero, len) == 0)
			continue;
		if ((w = pwrite(fd, p + off, len, (off_t)off)) != (ssize_t)len) {
			fprintf(stderr, "testpeer: write %s: %s\n", path,
			    w == -1 ? strerror(errno) : "short write");
			close(fd);
			return -1;
		}
	}
	if (ftruncate(fd, (off_t)n) == -1 || close(fd) == -1) {
		fprintf(stderr, "testpeer: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int
read_base(const char *path, uint8_t *p, uint64_t n)
{
	ssize_t r;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		fprintf(stderr, "testpeer: --base %s: %s\n", path,
		    strerror(errno));
		return -1;
	}
	while (n > 0) {
		if ((r = read(fd, p, n > (1u << 30) ? (1u << 30) : n)) <= 0) {
			if (r == -1 && errno == EINTR)
				continue;
			fprintf(stderr, "testpeer: --base %s: %s\n", path,
			    r == 0 ? "shorter than --size" : strerror(errno));
			close(fd);
			return -1;
		}
		p += r;
		n -= (uint64_t)r;
	}
	close(fd);
	return 0;
}

static void
stream_summary(const struct stream *s, const char *what)
{
	uint64_t i, missing = 0, first = 0;

	for (i = 1; i < s->s_next; i++)
		if (!(s->s_state[i] & OP_APPLIED)) {
			if (missing++ == 0)
				first = i;
		}
	fprintf(stderr, "testpeer: %s: sent %" PRIu64 " ops, %" PRIu64
	    " acked APPLIED, frontier %" PRIu64 "; %" PRIu64 " unacked",
	    what, s->s_next - 1, s->s_applied, s->s_frontier, missing);
	if (missing)
		fprintf(stderr, " (first seq %" PRIu64 ")", first);
	fprintf(stderr, "\n");
}

/* The honest run. Returns the exit code. */
static int
stream_run(const struct peer_opts *o)
{
	struct stream s;
	struct conn c;
	struct wire_hdr h;
	char why[WIRE_REASON_MAX + 64];
	uint64_t goodbye_at = 0;
	int rc, ret = PEER_EXIT_FAIL;

	memset(&s, 0, sizeof(s));
	s.s_o = o;
	s.s_c = &c;
	s.s_rng = o->seed;
	s.s_frng = o->seed ^ UINT64_C(0x5eed5eed5eed5eed);
	s.s_max_len = o->max_len;
	s.s_next = 1;
	if (o->fill)
		s.s_nfill = (o->size + o->max_len - 1) / o->max_len;
	s.s_last = s.s_nfill + o->ops + 1;
	if ((s.s_model = calloc(1, o->size)) == NULL ||
	    (s.s_state = calloc(1, s.s_last + 1)) == NULL) {
		fprintf(stderr, "testpeer: out of memory for a %" PRIu64
		    "-byte model\n", o->size);
		goto out;
	}
	if (o->base != NULL && read_base(o->base, s.s_model, o->size) == -1)
		goto out;

	if (conn_open(&c, o) == -1)
		goto out_conn;
	rc = peer_hello(&c, o, why, sizeof(why));
	if (o->expect_refusal != NULL) {
		if (rc == PEER_EXIT_REFUSED) {
			printf("refused: %s\n", why);
			if (strstr(why, o->expect_refusal) != NULL)
				ret = PEER_EXIT_OK;
			else
				fprintf(stderr, "testpeer: refused, but the "
				    "reason \"%s\" does not contain \"%s\"\n",
				    why, o->expect_refusal);
		} else if (rc == PEER_EXIT_OK) {
			fprintf(stderr, "testpeer: hello accepted, expected a "
			    "refusal containing \"%s\"\n", o->expect_refusal);
			peer_goodbye(&c, o, "expected a refusal");
		}
		goto out_conn;
	}
	if (rc == PEER_EXIT_REFUSED) {
		fprintf(stderr, "refused: %s\n", why);
		ret = PEER_EXIT_REFUSED;
		goto out_conn;
	}
	if (rc != PEER_EXIT_OK)
		goto out_conn;

	/* A PING first: the mirror must answer it with a PONG. */
	memset(&h, 0, sizeof(h));
	h.type = WIRE_PING;
	conn_queue_frame(&c, &h, NULL);
	s.s_pings++;

	s.s_last_progress = peer_now_ms();
	for (;;) {
		/* Produce while the output is drained and the window allows. */
		while (conn_out_empty(&c) && !s.s_goodbye_sent &&
		    !s.s_mirror_bye) {
			if (s.s_pong_due > 0) {
				memset(&h, 0, sizeof(h));
				h.type = WIRE_PING;
				h.flags = WIRE_F_PONG;
				conn_queue_frame(&c, &h, NULL);
				s.s_pong_due--;
			} else if (s.s_next < s.s_last) {
				if (s.s_next - 1 - s.s_applied >= PEER_WINDOW)
					break;
				stream_gen(&s);
				if (s.s_next % PEER_PING_EVERY == 0) {
					/* Mid-stream: a PONG among the acks. */
					memset(&h, 0, sizeof(h));
					h.type = WIRE_PING;
					conn_queue_frame(&c, &h, NULL);
					s.s_pings++;
				}
			} else if (s.s_next == s.s_last) {
				/* The final FLUSH. */
				memset(&h, 0, sizeof(h));
				h.type = WIRE_FLUSH;
				h.seq = s.s_next++;
				h.frontier = stream_frontier(&s, h.seq);
				s.s_state[h.seq] = OP_SENT | OP_FLUSH;
				s.s_nflush++;
				conn_queue_frame(&c, &h, NULL);
			} else if (s.s_applied == s.s_last &&
			    s.s_pongs == s.s_pings) {
				static const char bye[] = "test run complete";

				memset(&h, 0, sizeof(h));
				h.type = WIRE_GOODBYE;
				h.plen = sizeof(bye) - 1;
				conn_queue_frame(&c, &h, bye);
				s.s_goodbye_sent = 1;
				goodbye_at = peer_now_ms();
			} else
				break;
		}
		if ((rc = conn_pump(&c, 50)) == -1)
			goto out_conn;
		if (stream_input(&s) == -1) {
			stream_summary(&s, "failed");
			goto out_conn;
		}
		if (c.eof) {
			if (s.s_goodbye_sent && conn_out_empty(&c))
				break;
			fprintf(stderr, "testpeer: mirror %s %s\n", c.addr,
			    c.eofwhy);
			if (s.s_mirror_bye)
				fprintf(stderr, "testpeer: %" PRIu64 " ACK "
				    "APPLIED arrived after the mirror's "
				    "GOODBYE\n", s.s_applied - s.s_applied_at_bye);
			stream_summary(&s, "failed");
			goto out_conn;
		}
		if (s.s_goodbye_sent) {
			if (peer_now_ms() - goodbye_at >
			    (uint64_t)o->timeout * 1000) {
				fprintf(stderr, "testpeer: mirror did not "
				    "close the connection within %d s of our "
				    "GOODBYE\n", o->timeout);
				goto out_conn;
			}
		} else if (peer_now_ms() - s.s_last_progress >
		    (uint64_t)o->timeout * 1000) {
			fprintf(stderr, "testpeer: no ack from the mirror for "
			    "%d s\n", o->timeout);
			stream_summary(&s, "stalled");
			goto out_conn;
		}
	}
	if (o->image != NULL && write_file(o->image, s.s_model, o->size) == -1)
		goto out_conn;
	printf("ok: %" PRIu64 " ops (%" PRIu64 " writes, %" PRIu64 " bytes, %"
	    PRIu64 " write-zeroes, %" PRIu64 " trims, %" PRIu64 " flushes, %"
	    PRIu64 " FUA), mode %s, final frontier %" PRIu64 "\n", s.s_last,
	    s.s_nwrite, s.s_bytes, s.s_nzero, s.s_ntrim, s.s_nflush, s.s_nfua,
	    o->memsync ? "memsync" : "sync", s.s_frontier);
	ret = PEER_EXIT_OK;
out_conn:
	conn_close(&c);
out:
	free(s.s_model);
	free(s.s_state);
	return ret;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "connect", required_argument, NULL, 'C' },
		{ "ca", required_argument, NULL, 'a' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "peer-name", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 's' },
		{ "extent-size", required_argument, NULL, 'e' },
		{ "uuid", required_argument, NULL, 'u' },
		{ "mode", required_argument, NULL, 'm' },
		{ "seed", required_argument, NULL, 'S' },
		{ "ops", required_argument, NULL, 'o' },
		{ "max-len", required_argument, NULL, 'l' },
		{ "image", required_argument, NULL, 'i' },
		{ "base", required_argument, NULL, 'b' },
		{ "hostile", required_argument, NULL, 'H' },
		{ "expect-refusal", required_argument, NULL, 'R' },
		{ "timeout", required_argument, NULL, 't' },
		{ "frontier", required_argument, NULL, 'F' },
		{ "fill", no_argument, NULL, 'f' },
		{ "no-cert", no_argument, NULL, 'N' },
		{ "tls12", no_argument, NULL, '2' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct peer_opts o;
	uint64_t v;
	int ch, have_uuid = 0;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(&o, 0, sizeof(o));
	o.extent_size = 65536;
	o.seed = 1;
	o.ops = 1000;
	o.max_len = 256 * 1024;
	o.timeout = 30;

	while ((ch = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'C': o.connect = optarg; break;
		case 'a': o.ca = optarg; break;
		case 'c': o.cert = optarg; break;
		case 'k': o.key = optarg; break;
		case 'n': o.peer_name = optarg; break;
		case 's':
			if (parse_u64("--size", optarg, &o.size) == -1)
				usage();
			break;
		case 'e':
			if (parse_u64("--extent-size", optarg, &v) == -1 ||
			    v == 0 || v > UINT32_MAX)
				usage();
			o.extent_size = (uint32_t)v;
			break;
		case 'u':
			if (parse_uuid(optarg, o.uuid) == -1) {
				fprintf(stderr, "testpeer: --uuid %s: want 32 "
				    "hex digits\n", optarg);
				usage();
			}
			have_uuid = 1;
			break;
		case 'm':
			if (strcmp(optarg, "sync") == 0)
				o.memsync = 0;
			else if (strcmp(optarg, "memsync") == 0)
				o.memsync = 1;
			else {
				fprintf(stderr, "testpeer: --mode %s: sync or "
				    "memsync\n", optarg);
				usage();
			}
			break;
		case 'S':
			if (parse_u64("--seed", optarg, &o.seed) == -1)
				usage();
			break;
		case 'o':
			if (parse_u64("--ops", optarg, &o.ops) == -1 ||
			    o.ops > 100000000)
				usage();
			break;
		case 'l':
			if (parse_u64("--max-len", optarg, &v) == -1)
				usage();
			if (v < PEER_ALIGN || v > PEER_MAX_PAYLOAD ||
			    v % PEER_ALIGN != 0) {
				fprintf(stderr, "testpeer: --max-len: a "
				    "multiple of %u, %u..%u\n", PEER_ALIGN,
				    PEER_ALIGN, PEER_MAX_PAYLOAD);
				usage();
			}
			o.max_len = (uint32_t)v;
			break;
		case 'i': o.image = optarg; break;
		case 'b': o.base = optarg; break;
		case 'H': o.hostile = optarg; break;
		case 'R': o.expect_refusal = optarg; break;
		case 't':
			if (parse_u64("--timeout", optarg, &v) == -1 ||
			    v == 0 || v > 3600)
				usage();
			o.timeout = (int)v;
			break;
		case 'F':
			if (strcmp(optarg, "acked") == 0)
				o.frontier = FRONTIER_ACKED;
			else if (strcmp(optarg, "max") == 0)
				o.frontier = FRONTIER_MAX;
			else if (strcmp(optarg, "random") == 0)
				o.frontier = FRONTIER_RANDOM;
			else {
				fprintf(stderr, "testpeer: --frontier %s: acked, "
				    "max or random\n", optarg);
				usage();
			}
			break;
		case 'f': o.fill = 1; break;
		case 'N': o.no_cert = 1; break;
		case '2': o.tls12 = 1; break;
		case 'v': o.verbose = 1; break;
		default:
			usage();
		}
	}
	if (optind != argc || o.connect == NULL || o.ca == NULL ||
	    (!o.no_cert && (o.cert == NULL || o.key == NULL)) ||
	    o.peer_name == NULL || o.size == 0) {
		fprintf(stderr, "testpeer: --connect, --ca, --cert, --key, "
		    "--peer-name and --size are required\n");
		usage();
	}
	if (o.size % PEER_ALIGN != 0) {
		fprintf(stderr, "testpeer: --size must be a multiple of %u\n",
		    PEER_ALIGN);
		usage();
	}
	if (!have_uuid && RAND_bytes(o.uuid, WIRE_UUID_LEN) != 1) {
		fprintf(stderr, "testpeer: RAND_bytes failed\n");
		return PEER_EXIT_FAIL;
	}
	if (o.hostile != NULL)
		return hostile_run(&o);
	return stream_run(&o);
}
