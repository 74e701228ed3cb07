/*
 * repl.c: the primary's TLS link to duet-mirror.
 *
 * In async mode the stream encrypts and sends on a thread of its own
 * (stream_offload); callbacks still arrive on the event thread.
 *
 * States: IDLE -> CONNECTING (TCP + TLS) -> HELLO (sent, awaiting the ack)
 * -> UP; any failure -> BACKOFF (1, 2, 4 ... primary.reconnect_max s) ->
 * CONNECTING. A state
 * change is logged once; the retries behind it are not.
 *
 * Frames leave in sequence order, because the mirror numbers its work in
 * arrival order. The send queue (sq_*) holds requests whose frame has not
 * gone yet: a client write is ready at once, a sync read only once its
 * data is read, and nothing overtakes it.
 *
 * Sent frames wait for their acks in the ring, in sequence order: it is
 * the in-flight window (primary.max_inflight, .max_inflight_bytes). An
 * entry keeps its request while the client still waits for the mirror
 * (sync, memsync; and sync reads, which always wait for APPLIED so that
 * "sync complete" means applied). When the window stays full for
 * primary.congestion_timeout, or a client has waited that long on the
 * mirror alone (a mirror that answers pings but applies nothing, behind a
 * window that is not full), the mirror is dropped and the primary goes on
 * alone (DESIGN.md: never block the consumer forever); what it missed is
 * in the change record, and the reconnect resyncs it.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "common/notify.h"
#include "common/resolve.h"
#include "common/status.h"
#include "common/stream.h"
#include "common/tls.h"
#include "common/util.h"
#include "primary/primary.h"

/* Input limit: a whole READ_DATA frame, and a header after it. */
#define REPL_IN_MAX		(2 * (WIRE_HDR_SIZE + (size_t)PRIMARY_MAX_BLOCK))

enum repl_state { R_IDLE, R_CONNECTING, R_HELLO, R_CR, R_UP, R_BACKOFF,
    R_DONE };

struct ring_ent {
	uint64_t	 re_seq;
	uint64_t	 re_sent_ns;
	uint64_t	 re_bytes;
	struct preq	*re_r;		/* still waiting for the mirror, or NULL */
	unsigned	 re_need;	/* WIRE_ACK_* that answers re_r */
	int		 re_acked;	/* APPLIED seen */
	uint8_t		 re_cr;		/* a write's PR_CR_*: the AL hold */
	uint8_t		 re_flush;	/* a FLUSH */
	uint64_t	 re_off, re_len;
};

struct repl {
	struct primary	*rp_p;
	enum repl_state	 rp_state;
	struct stream	*rp_s;
	char		 rp_addr[256];
	struct event	*rp_timer;	/* backoff, hello timeout, ping */
	struct event	*rp_cong;	/* window full too long */
	struct event	*rp_stall;	/* a client waits on the mirror too long */
	struct resolve	*rp_resolve;	/* primary.mirror's name, resolving */
	unsigned	 rp_backoff;
	char		 rp_last_err[256];	/* logged once per change */
	uint64_t	 rp_last_send_ns;

	struct preq	*rp_sq_head, *rp_sq_tail;
	unsigned	 rp_sq_len;

	struct ring_ent	*rp_ring;
	size_t		 rp_cap, rp_head, rp_len;
	uint64_t	 rp_bytes;	/* in the ring */
	uint64_t	 rp_drops;	/* sessions lost (reconnects) */
	time_t		 rp_since;	/* last change of up / not up */
	int		 rp_split;	/* the mirror said split brain */
	uint64_t	 rp_zero_writes;	/* WRITEs sent as WRITE_ZEROES */
	struct log_every rp_mirror_errors;
	int		 rp_full;	/* the mirror shares no generation */
	uint8_t		*rp_crbits;	/* the mirror's record, arriving */
	uint64_t	 rp_crnext;	/* next extent expected in CR_XFER */
};

static void repl_connect(struct repl *);
static void repl_drop(struct repl *, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

int
repl_connected(struct primary *p)
{
	return p->p_repl->rp_state == R_UP;
}

int
repl_session(struct primary *p)
{
	enum repl_state st = p->p_repl->rp_state;

	return st == R_HELLO || st == R_CR || st == R_UP;
}

unsigned
repl_pending(struct primary *p)
{
	return p->p_repl->rp_sq_len + (unsigned)p->p_repl->rp_len;
}

int
repl_window_open(struct primary *p)
{
	struct repl *rp = p->p_repl;

	return rp->rp_len + rp->rp_sq_len < p->p_cfg.max_inflight &&
	    rp->rp_bytes < p->p_cfg.max_inflight_bytes;
}

/* Logs a state message once, until it changes. */
static void
repl_note(struct repl *rp, int warn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
repl_note(struct repl *rp, int warn, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (strcmp(msg, rp->rp_last_err) == 0) {
		log_debug("mirror %s: %s", rp->rp_addr, msg);
		return;
	}
	snprintf(rp->rp_last_err, sizeof(rp->rp_last_err), "%s", msg);
	if (warn)
		log_warnx("mirror %s: %s", rp->rp_addr, msg);
	else
		log_info("mirror %s: %s", rp->rp_addr, msg);
}

/* ---- the ring ---------------------------------------------------------- */

static struct ring_ent *
ring_at(struct repl *rp, size_t i)
{
	return &rp->rp_ring[(rp->rp_head + i) % rp->rp_cap];
}

static struct ring_ent *
ring_push(struct repl *rp)
{
	if (rp->rp_len == rp->rp_cap) {
		size_t ncap = rp->rp_cap ? rp->rp_cap * 2 : 256, i;
		struct ring_ent *n = calloc(ncap, sizeof(*n));

		VERIFY(n != NULL);
		for (i = 0; i < rp->rp_len; i++)
			n[i] = *ring_at(rp, i);
		free(rp->rp_ring);
		rp->rp_ring = n;
		rp->rp_cap = ncap;
		rp->rp_head = 0;
	}
	rp->rp_len++;
	return ring_at(rp, rp->rp_len - 1);
}

/* The entry for seq (the ring is in sequence order), or NULL. */
static struct ring_ent *
ring_find(struct repl *rp, uint64_t seq)
{
	size_t lo = 0, hi = rp->rp_len;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct ring_ent *e = ring_at(rp, mid);

		if (e->re_seq == seq)
			return e;
		if (e->re_seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- frames out -------------------------------------------------------- */

/* A PING's frontier: not past that of a frame still waiting to go, since
 * the mirror sees frontiers in the order frames arrive. */
static uint64_t
ping_frontier(struct repl *rp)
{
	if (rp->rp_sq_head != NULL)
		return rp->rp_sq_head->pr_frontier;
	return io_frontier_now(rp->rp_p);
}

static void
send_hdr(struct repl *rp, const struct wire_hdr *h, const void *payload)
{
	uint8_t buf[WIRE_HDR_SIZE];
	struct evbuffer *out = stream_output(rp->rp_s);

	wire_encode_hdr(buf, h);
	evbuffer_add(out, buf, sizeof(buf));
	if (h->plen > 0)
		evbuffer_add(out, payload, h->plen);
	rp->rp_last_send_ns = now_ns();
}

static unsigned
ack_needed(struct primary *p, const struct preq *r)
{
	/* With the disk failed, the mirror's copy is the only one. */
	if (r->pr_op.type == TG_OTHER || p->p_disk_failed)
		return WIRE_ACK_APPLIED;
	switch (p->p_cfg.mode) {
	case MODE_SYNC:
		return WIRE_ACK_APPLIED;
	case MODE_MEMSYNC:
		return (r->pr_op.type == TG_FLUSH ||
		    (r->pr_op.flags & TG_F_FUA)) ? WIRE_ACK_APPLIED :
		    WIRE_ACK_RECEIVED;
	default:
		return 0;
	}
}

/*
 * The stall check, every STALL_TICK s while a client waits on the ring:
 * how long has a client waited on the mirror alone, since its frame left
 * and its local part was done (a FLUSH waits for the local fdatasync too,
 * which may be as slow as the mirror's, and is no reason to drop it)?
 * Past primary.congestion_timeout, the mirror is dropped.
 */
#define STALL_TICK	1

static void
stall_arm(struct repl *rp)
{
	struct timeval tv = { STALL_TICK, 0 };

	evtimer_add(rp->rp_stall, &tv);
}

static void
stalled(evutil_socket_t fd, short what, void *arg)
{
	struct repl *rp = arg;
	uint64_t now = now_ns(), waited = 0, seq = 0, since;
	int waiting = 0;
	size_t i;

	(void)fd; (void)what;
	if (rp->rp_state != R_UP)
		return;
	for (i = 0; i < rp->rp_len; i++) {
		const struct ring_ent *e = ring_at(rp, i);

		if (e->re_r == NULL)
			continue;
		waiting = 1;
		if (!(e->re_r->pr_state & PR_LOCAL_DONE))
			continue;
		since = MAX(e->re_sent_ns, e->re_r->pr_local_ns);
		if (now > since && now - since > waited) {
			waited = now - since;
			seq = e->re_seq;
		}
	}
	if (waited >= rp->rp_p->p_cfg.congestion_timeout * 1000000000ull)
		repl_drop(rp, "operation %llu not applied within %u s; going "
		    "on alone", (unsigned long long)seq,
		    rp->rp_p->p_cfg.congestion_timeout);
	else if (waiting)
		stall_arm(rp);
}

/* Encodes r's frame and moves it from the send queue to the ring. */
static void
frame_out(struct repl *rp, struct preq *r)
{
	struct primary *p = rp->rp_p;
	struct tg_op *op = &r->pr_op;
	struct wire_hdr h = {
		.seq = op->seq,
		.frontier = r->pr_frontier,
		.offset = op->off,
		.length = op->len,
	};
	struct ring_ent *e;
	const void *payload = NULL;

	switch (op->type) {
	case TG_WRITE:
		/* Zeros travel as a 48-byte frame; NO_HOLE keeps what a
		 * write would do to the mirror's allocation. */
		if (buf_is_zero(r->pr_data, op->len)) {
			h.type = WIRE_WRITE_ZEROES;
			h.flags |= WIRE_F_NO_HOLE;
			rp->rp_zero_writes++;
			break;
		}
		h.type = WIRE_WRITE;
		h.plen = (uint32_t)op->len;
		payload = r->pr_data;
		break;
	case TG_OTHER:	/* a resync read: its data, zeroes, or a checksum */
		if (r->pr_kind == SY_CSUM) {
			h.type = WIRE_CSUM_REQ;
		} else if (r->pr_kind == SY_RREAD) {
			h.type = WIRE_READ_REQ;
		} else if (__atomic_load_n(&r->pr_nonzero, __ATOMIC_ACQUIRE)) {
			h.type = WIRE_WRITE;
			h.plen = (uint32_t)op->len;
			payload = r->pr_data;
		} else {
			h.type = WIRE_WRITE_ZEROES;
		}
		break;
	case TG_WRITE_ZEROES:
		h.type = WIRE_WRITE_ZEROES;
		if (op->flags & TG_F_NO_HOLE)
			h.flags |= WIRE_F_NO_HOLE;
		break;
	case TG_TRIM:
		h.type = WIRE_TRIM;
		break;
	case TG_FLUSH:
		h.type = WIRE_FLUSH;
		h.offset = h.length = 0;
		break;
	default:
		VERIFY(0);
	}
	if ((op->flags & TG_F_FUA) &&
	    (h.type == WIRE_WRITE || h.type == WIRE_WRITE_ZEROES))
		h.flags |= WIRE_F_FUA;
	if (op->type == TG_OTHER && r->pr_kind == SY_COPY)
		h.flags |= WIRE_F_COPY;
	send_hdr(rp, &h, payload);

	e = ring_push(rp);
	e->re_seq = op->seq;
	e->re_sent_ns = rp->rp_last_send_ns;
	e->re_bytes = h.plen + WIRE_HDR_SIZE;
	e->re_need = ack_needed(p, r);
	e->re_acked = 0;
	e->re_r = e->re_need != 0 ? r : NULL;
	e->re_cr = r->pr_cr;
	e->re_flush = op->type == TG_FLUSH;
	e->re_off = op->off;
	e->re_len = op->len;
	rp->rp_bytes += e->re_bytes;
	if (e->re_need == 0)
		r->pr_state |= PR_REMOTE_DONE;
	if (e->re_r != NULL && !evtimer_pending(rp->rp_stall, NULL))
		stall_arm(rp);
	io_sent(p, r);		/* may answer and free r */
}

void
repl_ready(struct primary *p)
{
	struct repl *rp = p->p_repl;
	struct preq *r;

	while ((r = rp->rp_sq_head) != NULL && rp->rp_state == R_UP) {
		if (r->pr_op.type == TG_OTHER && !(r->pr_state & PR_LOCAL_DONE))
			break;
		rp->rp_sq_head = r->pr_send_next;
		if (rp->rp_sq_head == NULL)
			rp->rp_sq_tail = NULL;
		rp->rp_sq_len--;
		r->pr_send_next = NULL;
		frame_out(rp, r);
	}
}

static void
congestion(evutil_socket_t fd, short what, void *arg)
{
	struct repl *rp = arg;

	(void)fd; (void)what;
	if (rp->rp_state == R_UP && !repl_window_open(rp->rp_p))
		repl_drop(rp, "window full for %u s; going on alone",
		    rp->rp_p->p_cfg.congestion_timeout);
}

void
repl_send(struct primary *p, struct preq *r)
{
	struct repl *rp = p->p_repl;
	struct timeval tv = { (time_t)p->p_cfg.congestion_timeout, 0 };

	r->pr_send_next = NULL;
	if (rp->rp_sq_tail != NULL)
		rp->rp_sq_tail->pr_send_next = r;
	else
		rp->rp_sq_head = r;
	rp->rp_sq_tail = r;
	rp->rp_sq_len++;
	repl_ready(p);
	if (!repl_window_open(p) && !p->p_paused) {
		nbd_pause(p);
		evtimer_add(rp->rp_cong, &tv);
	}
}

/* ---- frames in --------------------------------------------------------- */

/* The mirror is done with e's write: drop its AL reference, recording the
 * extents first when the mirror does not have the data. */
static void
ring_settle(struct repl *rp, struct ring_ent *e, int mark)
{
	struct cr *c = &rp->rp_p->p_cr;

	if (e->re_cr == PR_CR_NONE)
		return;
	if (mark)
		cr_mark(c, e->re_off, e->re_len);
	cr_end(c, e->re_off, e->re_len, 1, e->re_cr == PR_CR_TRACKED);
	e->re_cr = PR_CR_NONE;
}

/* An ACK, or a reply that stands for one (CSUM_REPLY, READ_DATA). */
static void
handle_ack(struct repl *rp, const struct wire_hdr *h, unsigned kind,
    int status, const uint8_t *payload)
{
	struct primary *p = rp->rp_p;
	struct ring_ent *e = ring_find(rp, h->seq);
	uint64_t skipped;
	struct preq *r;
	int flush_failed;

	if (e == NULL || (h->type != WIRE_ACK && (e->re_r == NULL ||
	    e->re_r->pr_op.type != TG_OTHER || e->re_r->pr_op.off != h->offset ||
	    e->re_r->pr_op.len != h->length ||
	    (h->type == WIRE_CSUM_REPLY) != (e->re_r->pr_kind == SY_CSUM) ||
	    (h->type == WIRE_READ_DATA) != (e->re_r->pr_kind == SY_RREAD)))) {
		repl_drop(rp, "%s for unknown operation %llu",
		    wire_type_name(h->type), (unsigned long long)h->seq);
		return;
	}
	if (status != 0) {
		/* The mirror's disk failed this op: it no longer matches
		 * there (ring_settle records the extents). */
		if (log_every(&rp->rp_mirror_errors, &skipped))
			log_warnx("mirror %s: operation %llu failed there: %s "
			    "(%llu more not logged since the last line)",
			    rp->rp_addr, (unsigned long long)h->seq,
			    strerror(status), (unsigned long long)skipped);
		p->p_errors++;
	}
	flush_failed = status != 0 && e->re_flush;
	if (kind == WIRE_ACK_APPLIED)
		ring_settle(rp, e, status != 0);
	if (h->type == WIRE_READ_DATA)
		memcpy(e->re_r->pr_data, payload, h->plen);
	if (h->type == WIRE_CSUM_REPLY &&
	    sync_csum_reply(p, e->re_r, payload, h->plen) != 0) {
		repl_drop(rp, "checksum reply of %u bytes for %llu bytes",
		    h->plen, (unsigned long long)h->length);
		return;
	}
	if (e->re_r != NULL && (kind == WIRE_ACK_APPLIED || kind == e->re_need)) {
		r = e->re_r;
		e->re_r = NULL;
		if (status != 0)
			r->pr_state |= PR_LOST;
		io_remote_done(p, r);
	}
	if (kind == WIRE_ACK_APPLIED)
		e->re_acked = 1;
	while (rp->rp_len > 0 && ring_at(rp, 0)->re_acked) {
		rp->rp_bytes -= ring_at(rp, 0)->re_bytes;
		rp->rp_head = (rp->rp_head + 1) % rp->rp_cap;
		rp->rp_len--;
	}
	if (flush_failed) {
		/* What the mirror's page cache lost, it recorded: its
		 * change record comes with the next hello. */
		repl_drop(rp, "its disk failed a flush: %s", strerror(status));
		return;
	}
	if (repl_window_open(p)) {
		event_del(rp->rp_cong);
		if (p->p_paused && !p->p_stopping)
			nbd_resume(p);
		sync_kick(p);
	}
	if (p->p_stopping)
		primary_check_stopped(p);
}

static void
handle_hello_ack(struct repl *rp, const uint8_t *payload, uint32_t plen)
{
	struct primary *p = rp->rp_p;
	struct cr *c = &p->p_cr;
	struct wire_hello a;
	int rc;

	if ((rc = wire_decode_hello(payload, plen, &a)) != 0) {
		repl_drop(rp, "bad hello reply: %s", wire_strerror(rc));
		return;
	}
	if (a.status == WIRE_ST_SPLIT_BRAIN) {
		if (!rp->rp_split)
			log_warnx("mirror %s: SPLIT BRAIN: %s; nothing is "
			    "copied until an operator runs `duetctl resolve "
			    "--discard-local` on the side whose data is to "
			    "be dropped", rp->rp_addr, a.reason);
		rp->rp_split = 1;
		notify_status("split brain with mirror %s", rp->rp_addr);
		repl_drop(rp, "split brain: %s", a.reason);
		return;
	}
	if (a.status != 0) {
		repl_drop(rp, "refused: %s", a.reason);
		return;
	}
	rp->rp_split = 0;
	rp->rp_full = (a.hflags & WIRE_HF_FULL) != 0;
	/* The mirror took our generation: writes without it from now on
	 * start a new one. */
	if (!(c->c_m.md_flags & META_F_PEER_HAS_GEN)) {
		c->c_m.md_flags |= META_F_PEER_HAS_GEN;
		if (cr_commit(c) != 0) {
			repl_drop(rp, "cannot write the metadata");
			return;
		}
	}
	free(rp->rp_crbits);
	if ((rp->rp_crbits = calloc(1, (c->c_nbits + 7) / 8 + 1)) == NULL) {
		repl_drop(rp, "out of memory for the change record");
		return;
	}
	rp->rp_crnext = 0;
	rp->rp_state = R_CR;
}

/*
 * One CR_XFER chunk of the mirror's change record, in extent order. With
 * the last one, the two records are combined and saved, and the session
 * is up: the resync copies exactly the extents of the union.
 */
static void
handle_cr(struct repl *rp, const struct wire_hdr *h, const uint8_t *payload)
{
	struct primary *p = rp->rp_p;
	struct cr *c = &p->p_cr;
	struct timeval ping = { (time_t)p->p_cfg.ping_interval, 0 };
	uint64_t before = c->c_ndirty, theirs = 0, i;
	uint8_t *chunk;
	int rc;

	if (h->offset != rp->rp_crnext || h->length > c->c_nbits - h->offset) {
		repl_drop(rp, "change record chunk %llu+%llu out of order",
		    (unsigned long long)h->offset, (unsigned long long)h->length);
		return;
	}
	if ((chunk = calloc(1, (h->length + 7) / 8 + 1)) == NULL) {
		repl_drop(rp, "out of memory for the change record");
		return;
	}
	rc = wire_decode_runs(payload, h->plen, h->length, chunk);
	for (i = 0; rc == 0 && i < h->length; i++)
		if ((chunk[i / 8] >> (i % 8)) & 1) {
			uint64_t e = h->offset + i;
			rp->rp_crbits[e / 8] |= (uint8_t)(1u << (e % 8));
		}
	free(chunk);
	if (rc != 0) {
		repl_drop(rp, "bad change record: %s", wire_strerror(rc));
		return;
	}
	rp->rp_crnext += h->length;
	if (!(h->flags & WIRE_F_LAST))
		return;
	if (rp->rp_crnext != c->c_nbits) {
		repl_drop(rp, "change record ends at extent %llu of %llu",
		    (unsigned long long)rp->rp_crnext,
		    (unsigned long long)c->c_nbits);
		return;
	}
	for (i = 0; i < c->c_nbits; i++)
		theirs += (rp->rp_crbits[i / 8] >> (i % 8)) & 1;
	cr_merge(c, rp->rp_crbits);
	if (rp->rp_full)
		cr_mark_all(c);
	FREE_AND_NULL(&rp->rp_crbits);
	/* The union is durable before the mirror may forget its part. */
	if (cr_save(c) != 0) {
		repl_drop(rp, "cannot write the metadata");
		return;
	}
	event_del(rp->rp_timer);
	evtimer_add(rp->rp_timer, &ping);
	rp->rp_state = R_UP;
	rp->rp_backoff = 0;
	/* A partition that TCP does not notice: the mirror answers every
	 * PING (sent after primary.ping_interval without traffic), and acks
	 * flow under load, so primary.idle_timeout without a byte means the
	 * link is dead even when the window is not full. */
	{
		struct timeval silence = { (time_t)p->p_cfg.idle_timeout, 0 };
		stream_set_timeout(rp->rp_s, &silence);
	}
	rp->rp_since = time(NULL);
	rp->rp_last_err[0] = '\0';
	notify_status("mirror %s: connected", rp->rp_addr);
	repl_note(rp, 0, "connected (mode %s); %s: ours %llu extents, the "
	    "mirror's %llu, union %llu", config_mode_name(p->p_cfg.mode),
	    rp->rp_full ? "full resync (the mirror shares no generation)" :
	    "resync of changed extents", (unsigned long long)before,
	    (unsigned long long)theirs, (unsigned long long)c->c_ndirty);
	sync_start(p, rp->rp_full);
}

static void
repl_read(struct stream *st, void *arg)
{
	struct repl *rp = arg;
	struct evbuffer *in = stream_input(st);
	struct wire_limits lim = {
		.max_payload = PRIMARY_MAX_BLOCK,
		.volume_size = rp->rp_p->p_cfg.vol_size,
		.align = PRIMARY_ALIGN,
	};
	struct wire_hdr h;
	uint8_t *hp, *payload;
	int rc;

	while (rp->rp_s == st && (hp = evbuffer_pullup(in, WIRE_HDR_SIZE))) {
		if ((rc = wire_decode_hdr(hp, WIRE_HDR_SIZE, &lim, &h)) != 0) {
			repl_drop(rp, "bad frame: %s", wire_strerror(rc));
			return;
		}
		if (evbuffer_get_length(in) < WIRE_HDR_SIZE + (size_t)h.plen)
			return;
		hp = evbuffer_pullup(in, WIRE_HDR_SIZE + (ssize_t)h.plen);
		payload = hp + WIRE_HDR_SIZE;
		if (rp->rp_state == R_HELLO && h.type != WIRE_HELLO_ACK) {
			repl_drop(rp, "expected a hello reply, got %s",
			    wire_type_name(h.type));
			return;
		}
		if ((rp->rp_state == R_CR) != (h.type == WIRE_CR_XFER)) {
			repl_drop(rp, "unexpected %s frame %s the change record",
			    wire_type_name(h.type), rp->rp_state == R_CR ?
			    "instead of" : "after");
			return;
		}
		switch (h.type) {
		case WIRE_HELLO_ACK:
			handle_hello_ack(rp, payload, h.plen);
			break;
		case WIRE_CR_XFER:
			handle_cr(rp, &h, payload);
			break;
		case WIRE_ACK:
			handle_ack(rp, &h, WIRE_ACK_KIND(h.flags),
			    (int)WIRE_ACK_STATUS(h.flags), NULL);
			break;
		case WIRE_CSUM_REPLY:
		case WIRE_READ_DATA:
			handle_ack(rp, &h, WIRE_ACK_APPLIED, 0, payload);
			break;
		case WIRE_PING:
			break;		/* our pong, or theirs: alive */
		case WIRE_GOODBYE:
			repl_drop(rp, "said goodbye: %.*s", (int)h.plen,
			    (char *)payload);
			return;
		default:
			repl_drop(rp, "unexpected %s frame",
			    wire_type_name(h.type));
			return;
		}
		if (rp->rp_s == st)
			evbuffer_drain(in, WIRE_HDR_SIZE + (size_t)h.plen);
	}
}

/* ---- connection -------------------------------------------------------- */

static void
send_hello(struct repl *rp)
{
	struct primary *p = rp->rp_p;
	struct wire_hello hello;
	struct wire_hdr h = { .type = WIRE_HELLO, .plen = WIRE_HELLO_SIZE };
	uint8_t buf[WIRE_HELLO_SIZE];

	memset(&hello, 0, sizeof(hello));
	hello.proto_version = WIRE_VERSION;
	hello.capabilities = WIRE_CAP_ACK_APPLIED |
	    (p->p_cfg.mode == MODE_MEMSYNC ? WIRE_CAP_ACK_RECEIVED : 0);
	memcpy(hello.uuid, p->p_cr.c_m.md_uuid, WIRE_UUID_LEN);
	hello.volume_size = p->p_cfg.vol_size;
	hello.extent_size = p->p_cfg.extent_size;
	hello.max_payload = PRIMARY_MAX_BLOCK;
	hello.gen_current = p->p_cr.c_m.md_gen;
	memcpy(hello.gen_history, p->p_cr.c_m.md_history,
	    sizeof(hello.gen_history));
	wire_encode_hello(buf, &hello);
	send_hdr(rp, &h, buf);
}

static void
repl_timer(evutil_socket_t fd, short what, void *arg)
{
	struct repl *rp = arg;
	const struct config *cfg = &rp->rp_p->p_cfg;
	struct timeval tv = { (time_t)cfg->ping_interval, 0 };
	struct wire_hdr ping = { .type = WIRE_PING };

	(void)fd; (void)what;
	switch (rp->rp_state) {
	case R_BACKOFF:
		repl_connect(rp);
		break;
	case R_CONNECTING:
	case R_HELLO:
	case R_CR:
		repl_drop(rp, "no answer within %u s", cfg->connect_timeout);
		break;
	case R_UP:
		/* The frontier rides along: an idle mirror learns that what
		 * it applied is done here too. */
		ping.frontier = ping_frontier(rp);
		if (now_ns() - rp->rp_last_send_ns >=
		    cfg->ping_interval * 1000000000ull)
			send_hdr(rp, &ping, NULL);
		evtimer_add(rp->rp_timer, &tv);
		break;
	default:
		break;
	}
}

/* TLS is up: say hello. */
static void
repl_tls_up(struct stream *st, void *arg)
{
	struct repl *rp = arg;
	struct timeval tv = { (time_t)rp->rp_p->p_cfg.connect_timeout, 0 };

	/* In async mode the clients never wait for the mirror, and the
	 * event thread, which answers them, is the bottleneck: encrypting
	 * and sending on a thread of its own lets another core do it. In
	 * sync and memsync the extra hand-off only adds to each write's
	 * round trip (bench/README.md). */
	if (rp->rp_p->p_cfg.mode == MODE_ASYNC && stream_offload(st) != 0)
		log_warnx("mirror %s: sending from the event thread: %s",
		    rp->rp_addr, strerror(errno));
	rp->rp_state = R_HELLO;
	send_hello(rp);
	event_del(rp->rp_timer);
	evtimer_add(rp->rp_timer, &tv);
}

/* The link ended: the OpenSSL reason, else the certificate's, else the
 * socket's. */
static void
repl_end(struct stream *st, enum stream_end what, int err, void *arg)
{
	struct repl *rp = arg;
	unsigned long e;
	char buf[256] = "";
	long vr;

	if (what == STREAM_TIMEOUT) {
		repl_drop(rp, "nothing from the mirror for %u s",
		    rp->rp_p->p_cfg.idle_timeout);
		return;
	}
	while ((e = stream_tls_error(st)) != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	if (buf[0] == '\0') {
		vr = SSL_get_verify_result(stream_ssl(st));
		snprintf(buf, sizeof(buf), "%s", vr != X509_V_OK ?
		    X509_verify_cert_error_string(vr) : err != 0 ?
		    strerror(err) : "connection closed");
	}
	repl_drop(rp, "%s", buf);
}

static const struct stream_cbs repl_cbs = {
	.read = repl_read,
	.connected = repl_tls_up,
	.end = repl_end,
};

/* A lookup under way is not wanted any more. */
static void
repl_resolve_cancel(struct repl *rp)
{
	if (rp->rp_resolve != NULL) {
		resolve_cancel(rp->rp_resolve);
		rp->rp_resolve = NULL;
	}
}

/* primary.mirror resolved: connect and start TLS. */
static void
repl_resolved(int rc, struct addrinfo *res, void *arg)
{
	struct repl *rp = arg;
	struct primary *p = rp->rp_p;
	SSL *ssl;

	rp->rp_resolve = NULL;
	if (rc != 0) {
		repl_drop(rp, "%s", gai_strerror(rc));
		return;
	}
	if ((ssl = tls_ssl_new(p->p_ssl, p->p_cfg.tls_peer_name)) == NULL) {
		freeaddrinfo(res);
		repl_drop(rp, "cannot set up TLS");
		return;
	}
	rp->rp_s = stream_connect_tls(p->p_base, res->ai_addr,
	    res->ai_addrlen, ssl, REPL_IN_MAX, 0, &repl_cbs, rp);
	freeaddrinfo(res);
	if (rp->rp_s == NULL) {
		repl_drop(rp, "connect: %s", strerror(errno));
		return;
	}
	stream_set_reading(rp->rp_s, 1);
}

/* Resolves (on a thread) and connects, all within connect_timeout. */
static void
repl_connect(struct repl *rp)
{
	struct primary *p = rp->rp_p;
	struct timeval tv = { (time_t)p->p_cfg.connect_timeout, 0 };
	char host[256], port[16];

	if (config_split_hostport(p->p_cfg.mirror_addr, host, sizeof(host),
	    port, sizeof(port)) != 0) {
		repl_drop(rp, "primary.mirror is not host:port");
		return;
	}
	rp->rp_state = R_CONNECTING;
	evtimer_add(rp->rp_timer, &tv);
	if ((rp->rp_resolve = resolve_start(p->p_base, host, port,
	    repl_resolved, rp)) == NULL)
		repl_drop(rp, "cannot resolve: %s", strerror(errno));
}

/*
 * The mirror is gone: whatever waited for it is done as far as the client
 * is concerned (the local side has it); the extents it did not apply are
 * recorded for the resync.
 */
static void
repl_drop(struct repl *rp, const char *fmt, ...)
{
	struct primary *p = rp->rp_p;
	struct timeval tv;
	struct preq *r;
	char msg[256];
	va_list ap;
	int was_up = rp->rp_state == R_UP;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (was_up) {
		rp->rp_drops++;
		rp->rp_since = time(NULL);
		notify_status("mirror %s: disconnected: %s", rp->rp_addr, msg);
	}
	repl_resolve_cancel(rp);
	if (rp->rp_s != NULL) {
		stream_free(rp->rp_s);
		rp->rp_s = NULL;
	}
	event_del(rp->rp_timer);
	event_del(rp->rp_cong);
	event_del(rp->rp_stall);
	rp->rp_state = rp->rp_state == R_DONE ? R_DONE : R_BACKOFF;

	while (rp->rp_len > 0) {
		struct ring_ent *e = ring_at(rp, 0);

		rp->rp_head = (rp->rp_head + 1) % rp->rp_cap;
		rp->rp_len--;
		ring_settle(rp, e, 1);
		if ((r = e->re_r) != NULL) {
			r->pr_state |= PR_LOST;
			io_remote_done(p, r);
		}
	}
	rp->rp_bytes = 0;
	while ((r = rp->rp_sq_head) != NULL) {
		rp->rp_sq_head = r->pr_send_next;
		rp->rp_sq_len--;
		r->pr_send_next = NULL;
		io_cr_release(p, r, 1);
		r->pr_state |= PR_LOST | PR_SENT | PR_REMOTE_DONE;
		io_sent(p, r);
	}
	rp->rp_sq_tail = NULL;

	if (rp->rp_state == R_DONE) {
		log_debug("mirror %s: closed: %s", rp->rp_addr, msg);
	} else {
		rp->rp_backoff = rp->rp_backoff == 0 ? 1 :
		    MIN(rp->rp_backoff * 2, p->p_cfg.reconnect_max);
		repl_note(rp, 1, "%s%s; retrying (every %u s at most)",
		    was_up ? "lost: " : "", msg, p->p_cfg.reconnect_max);
		tv.tv_sec = rp->rp_backoff;
		tv.tv_usec = 0;
		evtimer_add(rp->rp_timer, &tv);
	}
	if (p->p_paused && !p->p_stopping)
		nbd_resume(p);
	if (p->p_stopping)
		primary_check_stopped(p);
}

int
repl_init(struct primary *p, char *err, size_t errlen)
{
	struct repl *rp;

	if (p->p_cfg.mirror_addr[0] == '\0') {
		snprintf(err, errlen, "%s: primary.mirror: missing (required "
		    "by duet-primary)", p->p_cfg.path);
		return -1;
	}
	if ((rp = calloc(1, sizeof(*rp))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rp->rp_p = p;
	rp->rp_since = time(NULL);
	snprintf(rp->rp_addr, sizeof(rp->rp_addr), "%s", p->p_cfg.mirror_addr);
	rp->rp_timer = evtimer_new(p->p_base, repl_timer, rp);
	rp->rp_cong = evtimer_new(p->p_base, congestion, rp);
	rp->rp_stall = evtimer_new(p->p_base, stalled, rp);
	if (rp->rp_timer == NULL || rp->rp_cong == NULL ||
	    rp->rp_stall == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->p_repl = rp;
	repl_connect(rp);
	return 0;
}

/* Called once nothing is pending: the goodbye is the last frame. */
void
repl_shutdown(struct primary *p)
{
	struct repl *rp = p->p_repl;
	struct wire_hdr bye = { .type = WIRE_GOODBYE };

	if (rp->rp_state == R_UP)
		send_hdr(rp, &bye, NULL);
	repl_resolve_cancel(rp);
	rp->rp_state = R_DONE;
	event_del(rp->rp_timer);
	event_del(rp->rp_cong);
	event_del(rp->rp_stall);
}

void
repl_fini(struct primary *p)
{
	struct repl *rp = p->p_repl;

	if (rp == NULL)
		return;
	repl_resolve_cancel(rp);
	if (rp->rp_s != NULL)
		stream_free(rp->rp_s);
	event_free(rp->rp_timer);
	event_free(rp->rp_cong);
	event_free(rp->rp_stall);
	free(rp->rp_ring);
	free(rp->rp_crbits);
	free(rp);
	p->p_repl = NULL;
}

/* The link's part of "status": connection, inflight, reconnects. */
void
repl_status(struct primary *p, json_t *o, json_t *counters)
{
	struct repl *rp = p->p_repl;
	const char *state = rp->rp_state == R_UP ? "connected" :
	    rp->rp_split ? "split-brain" :
	    rp->rp_state == R_CONNECTING || rp->rp_state == R_HELLO ||
	    rp->rp_state == R_CR ? "connecting" : "disconnected";

	json_object_set_new(o, "connection",
	    status_connection(state, rp->rp_addr, rp->rp_since));
	json_object_set_new(o, "inflight", json_pack("{s:I, s:I}",
	    "ops", (json_int_t)(rp->rp_len + rp->rp_sq_len),
	    "bytes", (json_int_t)rp->rp_bytes));
	json_object_set_new(counters, "reconnects",
	    json_integer((json_int_t)rp->rp_drops));
	json_object_set_new(counters, "writes_sent_as_zeroes",
	    json_integer((json_int_t)rp->rp_zero_writes));
	json_object_set_new(o, "last_error",
	    status_str_or_null(rp->rp_state == R_UP ? NULL : rp->rp_last_err));
}

void
repl_reconfigured(struct primary *p)
{
	struct repl *rp = p->p_repl;
	struct timeval tv = { 0, 0 };

	switch (rp->rp_state) {
	case R_UP:
		/* A ping due later than the new interval would let the new
		 * idle timeout end a healthy link. */
		tv.tv_sec = (time_t)p->p_cfg.ping_interval;
		event_del(rp->rp_timer);
		evtimer_add(rp->rp_timer, &tv);
		tv.tv_sec = (time_t)p->p_cfg.idle_timeout;
		stream_set_timeout(rp->rp_s, &tv);
		break;
	case R_BACKOFF:
		if (rp->rp_backoff <= p->p_cfg.reconnect_max)
			break;
		rp->rp_backoff = p->p_cfg.reconnect_max;
		tv.tv_sec = (time_t)rp->rp_backoff;
		event_del(rp->rp_timer);
		evtimer_add(rp->rp_timer, &tv);
		break;
	default:
		break;
	}
}

void
repl_disk_failed(struct primary *p)
{
	struct repl *rp = p->p_repl;
	struct ring_ent *e;
	struct preq *r;

	for (r = p->p_inc_head; r != NULL; r = r->pr_inc_next) {
		if (!(r->pr_state & PR_SENT) || r->pr_op.type == TG_READ ||
		    r->pr_op.type == TG_OTHER ||
		    (e = ring_find(rp, r->pr_op.seq)) == NULL || e->re_acked)
			continue;
		e->re_r = r;
		e->re_need = WIRE_ACK_APPLIED;
		r->pr_state &= ~PR_REMOTE_DONE;
		if (!evtimer_pending(rp->rp_stall, NULL))
			stall_arm(rp);
	}
}

/* After a completed sync: the mirror learns that it is up to date. */
void
repl_in_sync(struct primary *p)
{
	struct repl *rp = p->p_repl;
	struct wire_hdr h = { .type = WIRE_PING, .flags = WIRE_F_IN_SYNC };

	h.frontier = ping_frontier(rp);
	if (rp->rp_state == R_UP)
		send_hdr(rp, &h, NULL);
}
