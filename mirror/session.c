/*
 * session.c: the mirror's TLS listener and its connections.
 *
 * A connection lives through: TLS handshake (the peer's certificate must
 * chain to tls.ca and carry tls.peer_name) -> HELLO within
 * mirror.hello_timeout -> operations -> GOODBYE or close. Only one
 * connection at a time may be past its hello (the primary); another hello
 * is refused with EBUSY, so a stray or hostile client never disturbs the
 * stream being applied.
 *
 * Any malformed frame closes that connection: the reason is logged with
 * the peer's address and sent in a GOODBYE, and nothing from that frame is
 * applied. Operations already handed to the engine still complete.
 *
 * Lifetime: a session is freed once its connection is gone (s_st NULL)
 * and no mop refers to it (s_refs 0); mops hold a reference until acked.
 *
 * Memory: reading stops while the bytes received but not yet applied
 * exceed mr_max_queued, or while acks queued to the peer exceed
 * MIRROR_OUT_MAX (a peer that does not read its acks), and resumes once
 * they fall below half.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/apply.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/stream.h"
#include "common/tls.h"
#include "common/util.h"
#include "mirror/mirror.h"

/* Why a session ends, or is refused, once a metadata write failed. */
#define METADATA_FAILED	"the mirror's volume.metadata failed (see its " \
	"log): it takes no writes until it is restarted"

struct fmap {
	uint64_t	fm_pseq;
	uint64_t	fm_lseq;
	uint64_t	fm_off, fm_len;	/* a write's span, for its AL hold */
	uint8_t		fm_cr;		/* CR_HOLD_* */
};

struct session {
	struct mirror	*s_m;
	struct session	*s_next;	/* mr_sessions */
	struct stream	*s_st;		/* NULL once the connection is gone */
	char		 s_peer[INET6_ADDRSTRLEN + 8];
	unsigned	 s_refs;	/* mops not yet acked */
	int		 s_tls_up;
	int		 s_hello;	/* past hello: this is mr_active */
	int		 s_closing;	/* no more reading; close once flushed */
	int		 s_paused;	/* reading paused for memory */
	const char	*s_goodbye;	/* to send once the last ack is out */
	uint32_t	 s_caps;
	struct wire_limits s_lim;
	struct event	*s_timer;	/* hello timeout, then close timeout */

	uint64_t	 s_last_pseq;
	uint64_t	 s_last_pfrontier;
	uint64_t	 s_cr_marks;	/* mr_cr.c_nmarks when its record went */
	/* Primary seq -> local seq for ops not yet passed by a frontier. */
	struct fmap	*s_fmap;
	size_t		 s_fmap_cap, s_fmap_head, s_fmap_len;
	uint64_t	 s_frontier_lseq;
};

static void session_read(struct stream *, void *);
static void in_sync_check(evutil_socket_t, short, void *);

static void
fmap_release(struct mirror *m, struct fmap *f, int mark)
{
	if (f->fm_cr == CR_HOLD_NONE)
		return;
	if (mark)
		cr_mark(&m->mr_cr, f->fm_off, f->fm_len);
	cr_end(&m->mr_cr, f->fm_off, f->fm_len, 1, f->fm_cr == CR_HOLD_TRACKED);
	f->fm_cr = CR_HOLD_NONE;
}

static void
session_free(struct session *s)
{
	struct mirror *m = s->s_m;
	struct session **pp;

	for (pp = &m->mr_sessions; *pp != s; pp = &(*pp)->s_next)
		;
	*pp = s->s_next;
	m->mr_nsessions--;
	if (s->s_timer != NULL)
		event_free(s->s_timer);
	free(s->s_fmap);
	free(s);
	if (m->mr_stopping)
		mirror_check_stopped(m);
}

/* The connection is gone; the session stays while mops refer to it. */
static void
session_drop(struct session *s)
{
	struct mirror *m = s->s_m;

	if (s->s_st != NULL) {
		stream_free(s->s_st);
		s->s_st = NULL;
		log_debug("peer %s: connection closed", s->s_peer);
	}
	if (s->s_timer != NULL)
		event_del(s->s_timer);
	if (m->mr_sync_s == s)
		m->mr_sync_s = NULL;	/* its IN_SYNC is void */
	if (m->mr_active == s) {
		/* What the primary never confirmed may be missing there:
		 * after a failover it must be sent back. */
		while (s->s_fmap_len > 0) {
			struct fmap *f = &s->s_fmap[s->s_fmap_head];

			fmap_release(m, f, 1);
			s->s_fmap_head = (s->s_fmap_head + 1) % s->s_fmap_cap;
			s->s_fmap_len--;
		}
		cr_save(&m->mr_cr);
		m->mr_active = NULL;
		m->mr_since = time(NULL);
		/* Up to date until now; writes may follow that it misses. */
		if (strcmp(m->mr_disk, "up-to-date") == 0)
			m->mr_disk = "outdated";
		notify_status("primary %s gone; disk %s", s->s_peer, m->mr_disk);
		log_info("peer %s: primary session ended", s->s_peer);
	}
	if (s->s_refs == 0)
		session_free(s);
}

static void
send_frame(struct session *s, const struct wire_hdr *h, const void *payload)
{
	uint8_t buf[WIRE_HDR_SIZE];
	struct evbuffer *out;

	if (s->s_st == NULL)
		return;
	out = stream_output(s->s_st);
	wire_encode_hdr(buf, h);
	evbuffer_add(out, buf, sizeof(buf));
	if (h->plen > 0)
		evbuffer_add(out, payload, h->plen);
}

static void
send_goodbye(struct session *s, const char *reason)
{
	struct wire_hdr h = { .type = WIRE_GOODBYE };
	size_t n = strlen(reason);

	h.plen = (uint32_t)MIN(n, WIRE_REASON_MAX - 1);
	send_frame(s, &h, reason);
}

static void
close_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what;
	session_drop(arg);
}

/*
 * Stops reading and closes once what is queued to the peer has been sent
 * (or after 2 s, for a peer that does not read).
 */
static void
session_close(struct session *s)
{
	struct timeval tv = { 2, 0 };

	if (s->s_st == NULL || s->s_closing)
		return;
	s->s_closing = 1;
	stream_set_reading(s->s_st, 0);
	if (stream_output_pending(s->s_st) == 0) {
		session_drop(s);
		return;
	}
	event_del(s->s_timer);
	evtimer_assign(s->s_timer, s->s_m->mr_base, close_timeout, s);
	evtimer_add(s->s_timer, &tv);
}

/* Logs why, tells the peer, closes. */
static void
session_fail(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
session_fail(struct session *s, const char *fmt, ...)
{
	char reason[WIRE_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	log_warnx("peer %s: %s; closing the connection", s->s_peer, reason);
	send_goodbye(s, reason);
	session_close(s);
}

void
session_ack(struct session *s, uint64_t pseq, unsigned kind, int status)
{
	struct wire_hdr h = {
		.type = WIRE_ACK,
		.seq = pseq,
		.flags = WIRE_ACK_FLAGS(kind, (uint32_t)status),
	};

	send_frame(s, &h, NULL);
}

/* An op is done here: its ACK, or the reply that stands for it. */
void
session_reply(struct session *s, struct mop *mo)
{
	struct mirror *m = s->s_m;
	struct wire_hdr h = {
		.type = mo->mo_reply,
		.seq = mo->mo_pseq,
		.offset = mo->mo_op.off,
		.length = mo->mo_op.len,
	};
	uint64_t pos, n, ext = m->mr_cfg.extent_size;
	uint8_t *digests, *d;

	if (mo->mo_reply == WIRE_ACK || mo->mo_status != 0) {
		session_ack(s, mo->mo_pseq, WIRE_ACK_APPLIED, mo->mo_status);
		return;
	}
	if (mo->mo_reply == WIRE_READ_DATA) {
		h.plen = (uint32_t)mo->mo_op.len;
		send_frame(s, &h, mo->mo_data);
		return;
	}
	/* CSUM_REPLY: one SHA-256 per extent of the span. */
	h.plen = (uint32_t)(((mo->mo_op.len + ext - 1) / ext) * WIRE_DIGEST_LEN);
	VERIFY((digests = malloc(h.plen)) != NULL);
	for (pos = 0, d = digests; pos < mo->mo_op.len; pos += n,
	    d += WIRE_DIGEST_LEN) {
		n = MIN(ext, mo->mo_op.len - pos);
		VERIFY(EVP_Digest(mo->mo_data + pos, n, d, NULL, EVP_sha256(),
		    NULL) == 1);
	}
	send_frame(s, &h, digests);
	free(digests);
}

void
session_op_finished(struct session *s)
{
	VERIFY(s->s_refs > 0);
	if (--s->s_refs > 0)
		return;
	if (s->s_st == NULL) {
		session_free(s);
	} else if (s->s_goodbye != NULL) {
		/* The goodbye is the last frame: after every ack. */
		send_goodbye(s, s->s_goodbye);
		s->s_goodbye = NULL;
	}
}

/* Whether reading must pause: too much unapplied or unsent. */
static int
must_pause(struct session *s)
{
	return s->s_m->mr_queued_bytes > s->s_m->mr_max_queued ||
	    stream_output_pending(s->s_st) > MIRROR_OUT_MAX;
}

void
session_resume_all(struct mirror *m)
{
	struct session *s, *next;

	if (m->mr_queued_bytes > m->mr_max_queued / 2)
		return;
	/* session_read may free s (a GOODBYE waiting in its input). */
	for (s = m->mr_sessions; s != NULL; s = next) {
		next = s->s_next;
		if (!s->s_paused || s->s_st == NULL || s->s_closing ||
		    stream_output_pending(s->s_st) > MIRROR_OUT_MAX / 2)
			continue;
		s->s_paused = 0;
		stream_set_reading(s->s_st, 1);
		/* Frames may already wait in the input buffer. */
		session_read(s->s_st, s);
	}
}

/* ---- hello ----------------------------------------------------------- */

static void
hello_refuse(struct session *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
hello_refuse(struct session *s, int status, const char *fmt, ...)
{
	struct wire_hello a;
	struct wire_hdr h = { .type = WIRE_HELLO_ACK, .plen = WIRE_HELLO_SIZE };
	uint8_t buf[WIRE_HELLO_SIZE];
	va_list ap;

	memset(&a, 0, sizeof(a));
	a.proto_version = WIRE_VERSION;
	a.status = status;
	va_start(ap, fmt);
	vsnprintf(a.reason, sizeof(a.reason), fmt, ap);
	va_end(ap);
	log_warnx("peer %s: hello refused: %s", s->s_peer, a.reason);
	wire_encode_hello(buf, &a);
	send_frame(s, &h, buf);
	session_close(s);
}

/*
 * How this mirror's data stands to the primary's, by generations:
 *   SAME    the mirror's is the primary's current one
 *   BEHIND  the mirror's is in the primary's history: the primary moved
 *           on (wrote without it, or was promoted) and this side did not
 *   NONE    the mirror has none (new): everything is copied
 *   SPLIT   anything else: both sides wrote as primary (or the mirror is
 *           ahead of the primary); copying would lose one side's writes
 * In the first two the union of both change records is what differs.
 */
enum gen_rel { GEN_SAME, GEN_BEHIND, GEN_NONE, GEN_SPLIT };

static enum gen_rel
gen_relation(const struct cr *c, const struct wire_hello *h)
{
	if (c->c_m.md_gen == 0)
		return GEN_NONE;
	if (c->c_m.md_gen == h->gen_current)
		return GEN_SAME;
	for (int i = 0; i < WIRE_GEN_HISTORY; i++)
		if (h->gen_history[i] == c->c_m.md_gen)
			return GEN_BEHIND;
	return GEN_SPLIT;
}

/* Whether the two sides share any generation (a common ancestor whose
 * changes since both change records hold). */
static int
shares_history(const struct cr *c, const struct wire_hello *h)
{
	if (cr_knows_gen(&c->c_m, h->gen_current))
		return 1;
	for (int i = 0; i < WIRE_GEN_HISTORY; i++)
		if (cr_knows_gen(&c->c_m, h->gen_history[i]))
			return 1;
	return 0;
}

/* This side's change record, in CR_XFER chunks, right after HELLO_ACK. */
static void
send_change_record(struct session *s)
{
	struct cr *c = &s->s_m->mr_cr;
	uint64_t first, n, chunk = 1u << 16;	/* extents per frame */
	size_t cap = (size_t)chunk * 4 + 8;
	uint8_t *bits, *out;
	long len;

	/* What a failed flush may have lost goes too: this session needs
	 * no ending for it. */
	cr_check_flushes(c);
	s->s_m->mr_errors_told = c->c_errors_seen;
	s->s_cr_marks = c->c_nmarks;
	VERIFY((bits = malloc(chunk / 8 + 1)) != NULL);
	VERIFY((out = malloc(cap)) != NULL);
	for (first = 0; first < c->c_nbits; first += n) {
		struct wire_hdr h = { .type = WIRE_CR_XFER };

		n = MIN(chunk, c->c_nbits - first);
		memset(bits, 0, chunk / 8 + 1);
		for (uint64_t i = 0; i < n; i++)
			if (cr_test(c, first + i))
				bits[i / 8] |= (uint8_t)(1u << (i % 8));
		len = wire_encode_runs(bits, n, out, cap);
		VERIFY(len > 0);
		h.offset = first;
		h.length = n;
		h.plen = (uint32_t)len;
		if (first + n == c->c_nbits)
			h.flags = WIRE_F_LAST;
		send_frame(s, &h, out);
	}
	free(bits);
	free(out);
	log_info("peer %s: sent this side's change record (%llu of %llu "
	    "extents changed)", s->s_peer, (unsigned long long)c->c_ndirty,
	    (unsigned long long)c->c_nbits);
}

static void
handle_hello(struct session *s, const uint8_t *payload, uint32_t plen)
{
	struct mirror *m = s->s_m;
	struct config *cfg = &m->mr_cfg;
	struct wire_hello h, a;
	struct wire_hdr ah = { .type = WIRE_HELLO_ACK, .plen = WIRE_HELLO_SIZE };
	uint8_t buf[WIRE_HELLO_SIZE];
	struct cr *c = &m->mr_cr;
	char u1[37], u2[37];
	enum gen_rel rel;
	int rc;

	if ((rc = wire_decode_hello(payload, plen, &h)) != 0) {
		session_fail(s, "hello: %s", wire_strerror(rc));
		return;
	}
	if (h.proto_version != WIRE_VERSION) {
		hello_refuse(s, EPROTONOSUPPORT, "protocol version %u, this "
		    "mirror speaks %u", h.proto_version, WIRE_VERSION);
		return;
	}
	if (h.volume_size != cfg->vol_size) {
		hello_refuse(s, EINVAL, "volume size %llu differs from the "
		    "mirror's %llu", (unsigned long long)h.volume_size,
		    (unsigned long long)cfg->vol_size);
		return;
	}
	if (h.extent_size != cfg->extent_size) {
		hello_refuse(s, EINVAL, "extent size %u differs from the "
		    "mirror's %u", h.extent_size, cfg->extent_size);
		return;
	}
	if (h.max_payload < MIRROR_ALIGN) {
		hello_refuse(s, EINVAL, "max payload %u below %u",
		    h.max_payload, MIRROR_ALIGN);
		return;
	}
	meta_uuid_str(h.uuid, u1);
	meta_uuid_str(c->c_m.md_uuid, u2);
	if (meta_has_uuid(&c->c_m) &&
	    memcmp(h.uuid, c->c_m.md_uuid, META_UUID_LEN) != 0) {
		hello_refuse(s, EINVAL, "volume uuid %s is not this mirror's "
		    "%s", u1, u2);
		return;
	}
	if (m->mr_active != NULL) {
		hello_refuse(s, EBUSY, "another primary session is active "
		    "(peer %s)", m->mr_active->s_peer);
		return;
	}
	if (m->mr_stopping) {
		hello_refuse(s, ESHUTDOWN, "mirror is shutting down");
		return;
	}
	if (c->c_failed) {
		hello_refuse(s, EIO, "%s", METADATA_FAILED);
		return;
	}
	if ((rel = gen_relation(c, &h)) == GEN_SPLIT) {
		if (!m->mr_discard) {
			if (!m->mr_split)
				log_warnx("peer %s: SPLIT BRAIN: the primary's "
				    "generation %016llx and this mirror's "
				    "%016llx have diverged; nothing is copied. "
				    "Run `duetctl resolve --discard-local` on "
				    "the side whose data is to be dropped",
				    s->s_peer, (unsigned long long)h.gen_current,
				    (unsigned long long)c->c_m.md_gen);
			m->mr_split = 1;
			notify_status("split brain with primary %s", s->s_peer);
			hello_refuse(s, WIRE_ST_SPLIT_BRAIN, "generations "
			    "diverged (primary %016llx, mirror %016llx)",
			    (unsigned long long)h.gen_current,
			    (unsigned long long)c->c_m.md_gen);
			return;
		}
		log_warnx("peer %s: split brain resolved: this side's data "
		    "is discarded as the operator asked", s->s_peer);
		rel = shares_history(c, &h) ? GEN_BEHIND : GEN_NONE;
	}
	/* From here this side's data is the primary's generation on its way:
	 * inconsistent until the resync is through (IN_SYNC). */
	memcpy(c->c_m.md_uuid, h.uuid, META_UUID_LEN);
	c->c_m.md_gen = h.gen_current;
	memcpy(c->c_m.md_history, h.gen_history, sizeof(c->c_m.md_history));
	c->c_m.md_flags |= META_F_INCONSISTENT;
	c->c_m.md_flags &= ~META_F_DISCARD;	/* a session disarms it */
	if (cr_commit(c) != 0) {
		hello_refuse(s, EIO, "mirror cannot write its metadata");
		return;
	}
	if (!meta_has_uuid(&m->mr_cr.c_m) || memcmp(u1, u2, sizeof(u1)) != 0)
		log_info("adopted volume uuid %s from peer %s", u1, s->s_peer);
	m->mr_discard = 0;
	m->mr_split = 0;

	s->s_hello = 1;
	s->s_caps = h.capabilities;
	s->s_lim.max_payload = MIN(h.max_payload, MIRROR_MAX_PAYLOAD);
	s->s_lim.volume_size = cfg->vol_size;
	s->s_lim.align = MIRROR_ALIGN;
	/* Whatever came before this session counts as this one's floor. */
	s->s_frontier_lseq = m->mr_lseq;
	m->mr_active = s;
	m->mr_since = time(NULL);
	m->mr_nprimary++;
	m->mr_disk = "inconsistent";	/* the primary's resync begins */
	notify_status("primary %s connected; resync running", s->s_peer);
	event_del(s->s_timer);
	/* A primary pings when idle: silence for mirror.idle_timeout means it
	 * is gone, and must not keep a reconnecting primary out. */
	{
		struct timeval idle = { (time_t)cfg->session_timeout, 0 };
		stream_set_timeout(s->s_st, &idle);
	}

	memset(&a, 0, sizeof(a));
	a.proto_version = WIRE_VERSION;
	a.capabilities = h.capabilities &
	    (WIRE_CAP_ACK_RECEIVED | WIRE_CAP_ACK_APPLIED);
	memcpy(a.uuid, c->c_m.md_uuid, META_UUID_LEN);
	a.volume_size = cfg->vol_size;
	a.extent_size = cfg->extent_size;
	a.max_payload = s->s_lim.max_payload;
	a.gen_current = c->c_m.md_gen;
	memcpy(a.gen_history, c->c_m.md_history, sizeof(a.gen_history));
	a.hflags = rel == GEN_NONE ? WIRE_HF_FULL : 0;
	wire_encode_hello(buf, &a);
	send_frame(s, &ah, buf);
	send_change_record(s);
	log_info("peer %s: primary session started (uuid %s, max payload %u, "
	    "%s)", s->s_peer, u1, a.max_payload, rel == GEN_NONE ?
	    "full resync" : rel == GEN_SAME ? "same generation" :
	    "generation behind the primary's");
}

/* ---- operations ------------------------------------------------------ */

/*
 * The local frontier for the primary's frontier pf: the local number of
 * the newest op of this session numbered <= pf. Frontiers never decrease,
 * so entries passed once are dropped.
 */
static uint64_t
fmap_frontier(struct session *s, uint64_t pf)
{
	while (s->s_fmap_len > 0 && s->s_fmap[s->s_fmap_head].fm_pseq <= pf) {
		s->s_frontier_lseq = s->s_fmap[s->s_fmap_head].fm_lseq;
		fmap_release(s->s_m, &s->s_fmap[s->s_fmap_head], 0);
		s->s_fmap_head = (s->s_fmap_head + 1) % s->s_fmap_cap;
		s->s_fmap_len--;
	}
	return s->s_frontier_lseq;
}

static int
fmap_push(struct session *s, uint64_t pseq, uint64_t lseq,
    const struct mop *mo)
{
	if (s->s_fmap_len == s->s_fmap_cap) {
		size_t ncap = s->s_fmap_cap ? s->s_fmap_cap * 2 : 1024, i;
		struct fmap *n;

		if (ncap > MIRROR_FMAP_MAX)
			return -1;
		if ((n = malloc(ncap * sizeof(*n))) == NULL)
			return -1;
		for (i = 0; i < s->s_fmap_len; i++)
			n[i] = s->s_fmap[(s->s_fmap_head + i) % s->s_fmap_cap];
		free(s->s_fmap);
		s->s_fmap = n;
		s->s_fmap_cap = ncap;
		s->s_fmap_head = 0;
	}
	s->s_fmap[(s->s_fmap_head + s->s_fmap_len) % s->s_fmap_cap] =
	    (struct fmap){ pseq, lseq, mo->mo_op.off, mo->mo_op.len,
	    mo->mo_cr };
	s->s_fmap_len++;
	return 0;
}

static const enum tg_type op_types[] = {
	[WIRE_WRITE] = TG_WRITE,
	[WIRE_WRITE_ZEROES] = TG_WRITE_ZEROES,
	[WIRE_TRIM] = TG_TRIM,
	[WIRE_FLUSH] = TG_FLUSH,
	[WIRE_READ_REQ] = TG_READ,
	[WIRE_CSUM_REQ] = TG_READ,
};

#define INLINE_MIN	8192	/* smaller payloads are copied */
#define INLINE_IOV	64	/* input chains a payload may span */

/*
 * A WRITE that the engine would apply inline is applied straight from the
 * input buffer, which saves copying its payload (on 64 KiB writes, about
 * 6 % of the mirror's CPU). Returns 0 when it was (and drains the
 * payload), -EAGAIN when the op is still the caller's, else -errno.
 */
static int
submit_write_inline(struct mirror *m, struct mop *mo, struct evbuffer *in,
    uint32_t plen)
{
	struct evbuffer_iovec v[INLINE_IOV];
	struct iovec iov[INLINE_IOV];
	struct tg_op *op = &mo->mo_op;
	size_t left = plen;
	int i, n, rc;

	if (op->type != TG_WRITE || plen < INLINE_MIN || plen != op->len ||
	    (n = evbuffer_peek(in, (ev_ssize_t)plen, NULL, v, INLINE_IOV)) >
	    INLINE_IOV)
		return -EAGAIN;
	for (i = 0; i < n; i++) {	/* the last may reach past it */
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = MIN(v[i].iov_len, left);
		left -= iov[i].iov_len;
	}
	VERIFY(left == 0);	/* session_read waits for the whole frame */
	op->buf = NULL;
	op->iov = iov;
	op->iovcnt = n;
	rc = tg_try_inline(m->mr_tg, op);
	op->iov = NULL;
	op->iovcnt = 0;
	op->buf = mo->mo_data;
	if (rc != 1)
		return rc;
	evbuffer_drain(in, plen);
	return 0;
}

/*
 * One operation frame whose header is decoded and whose payload (plen
 * bytes) is at the head of in. Returns 0, or -1 if the session failed.
 */
static int
handle_op(struct session *s, const struct wire_hdr *h, struct evbuffer *in)
{
	struct mirror *m = s->s_m;
	struct mop *mo;
	uint64_t lseq, lfront, dlen;
	int rc;

	if (h->seq <= s->s_last_pseq) {
		session_fail(s, "sequence number %llu not above %llu",
		    (unsigned long long)h->seq,
		    (unsigned long long)s->s_last_pseq);
		return -1;
	}
	if (h->frontier >= h->seq || h->frontier < s->s_last_pfrontier) {
		session_fail(s, "frontier %llu of op %llu is not in [%llu, %llu)",
		    (unsigned long long)h->frontier, (unsigned long long)h->seq,
		    (unsigned long long)s->s_last_pfrontier,
		    (unsigned long long)h->seq);
		return -1;
	}
	if ((h->type == WIRE_WRITE || h->type == WIRE_WRITE_ZEROES ||
	    h->type == WIRE_TRIM) && m->mr_cr.c_failed) {
		/* Resync copies too: their pass could not end (IN_SYNC). */
		session_fail(s, "%s", METADATA_FAILED);
		return -1;
	}
	if (h->flags & WIRE_F_COPY) {
		/* Resync copies are not in the activity log (the primary
		 * has them), so until the pass is through and flushed
		 * (IN_SYNC) a crash must mark every extent: inconsistent,
		 * also for a pass by command over an up-to-date disk. */
		m->mr_sync_s = NULL;
		if (!(m->mr_cr.c_m.md_flags & META_F_INCONSISTENT)) {
			m->mr_cr.c_m.md_flags |= META_F_INCONSISTENT;
			if (cr_commit(&m->mr_cr) != 0) {
				session_fail(s, "cannot write the metadata");
				return -1;
			}
			m->mr_disk = "inconsistent";
			log_info("peer %s: resync copies: the disk is "
			    "inconsistent until the pass is through", s->s_peer);
		}
	}
	/* Reads (READ_REQ, CSUM_REQ) need room for what they read. */
	dlen = h->type == WIRE_READ_REQ || h->type == WIRE_CSUM_REQ ?
	    h->length : h->plen;
	if ((mo = apply_alloc(m, dlen)) == NULL) {
		session_fail(s, "out of memory for op %llu",
		    (unsigned long long)h->seq);
		return -1;
	}
	memset(&mo->mo_op, 0, sizeof(mo->mo_op));
	mo->mo_cr = CR_HOLD_NONE;
	mo->mo_reply = h->type == WIRE_READ_REQ ? WIRE_READ_DATA :
	    h->type == WIRE_CSUM_REQ ? WIRE_CSUM_REPLY : WIRE_ACK;
	mo->mo_op.off = h->offset;
	mo->mo_op.len = h->length;
	mo->mo_op.type = op_types[h->type];
	if ((mo->mo_op.type == TG_WRITE || mo->mo_op.type == TG_WRITE_ZEROES ||
	    mo->mo_op.type == TG_TRIM) && !(h->flags & WIRE_F_COPY)) {
		/* Hot before it is applied. Untracked, a power cut here
		 * could lose it with no record on either side: with the
		 * metadata failed, the primary keeps the changes instead. */
		if ((rc = cr_begin(&m->mr_cr, h->offset, h->length, 2)) < 0) {
			apply_free(m, mo);
			session_fail(s, "%s", METADATA_FAILED);
			return -1;
		}
		mo->mo_cr = rc == 0 ? CR_HOLD_TRACKED : CR_HOLD_MARKED;
	}
	lfront = fmap_frontier(s, h->frontier);
	lseq = m->mr_lseq + 1;
	if (fmap_push(s, h->seq, lseq, mo) != 0) {
		if (mo->mo_cr != CR_HOLD_NONE)
			cr_end(&m->mr_cr, h->offset, h->length, 2,
			    mo->mo_cr == CR_HOLD_TRACKED);
		apply_free(m, mo);
		session_fail(s, "frontier %llu lags more than %u ops behind",
		    (unsigned long long)h->frontier, MIRROR_FMAP_MAX);
		return -1;
	}
	mo->mo_op.seq = lseq;
	mo->mo_op.frontier = lfront;
	mo->mo_op.flags = ((h->flags & WIRE_F_FUA) ? TG_F_FUA : 0) |
	    ((h->flags & WIRE_F_NO_HOLE) ? TG_F_NO_HOLE : 0);
	mo->mo_op.buf = dlen > 0 ? mo->mo_data : NULL;
	mo->mo_op.done = apply_done;
	mo->mo_op.arg = m;
	mo->mo_s = s;
	mo->mo_pseq = h->seq;
	mo->mo_status = 0;
	/* The checks above keep the engine's ordering contract. */
	if ((rc = submit_write_inline(m, mo, in, h->plen)) == -EAGAIN) {
		if (h->plen > 0)
			evbuffer_remove(in, mo->mo_data, h->plen);
		rc = tg_submit(m->mr_tg, &mo->mo_op);
	}
	if (rc != 0) {
		/* Its fmap entry goes (marked) with the failed session. */
		if (mo->mo_cr != CR_HOLD_NONE)
			cr_end(&m->mr_cr, h->offset, h->length, 1,
			    mo->mo_cr == CR_HOLD_TRACKED);
		apply_free(m, mo);
		session_fail(s, "cannot queue op %llu: %s",
		    (unsigned long long)h->seq, strerror(-rc));
		return -1;
	}
	m->mr_lseq = lseq;
	s->s_last_pseq = h->seq;
	s->s_last_pfrontier = h->frontier;
	s->s_refs++;
	m->mr_inflight++;
	/* A TRIM's or WRITE_ZEROES' pieces: up to 3.5 MiB for 4 GiB. */
	mo->mo_cost = mo->mo_bytes + (dlen == 0 ? tg_op_extra(m->mr_tg,
	    h->offset, h->length) : 0);
	m->mr_queued_bytes += mo->mo_cost;
	m->mr_ops++;
	m->mr_bytes += h->length;
	if ((s->s_caps & WIRE_CAP_ACK_RECEIVED) && mo->mo_reply == WIRE_ACK)
		session_ack(s, h->seq, WIRE_ACK_RECEIVED, 0);
	return 0;
}

/* The primary says everything before this frame was sent: once those are
 * applied, the disk equals the primary's. In-flight ones are applied in
 * order before anything newer, so "up-to-date" holds from here on. The
 * primary counted every copy applied before it sent this; they must reach
 * the disk before the metadata says the volume is consistent (a mirror
 * promoted after a power cut must not lack them). That flush runs in the
 * background (it may write back gigabytes): in_sync_check waits for one
 * that began after this, and then marks the volume consistent. */
static void
m_in_sync(struct session *s)
{
	struct mirror *m = s->s_m;
	struct timeval tv = { 0, 0 };

	if (m->mr_sync_ev == NULL &&
	    (m->mr_sync_ev = evtimer_new(m->mr_base, in_sync_check, m)) == NULL) {
		log_warnx("peer %s: no memory to mark the volume up to date",
		    s->s_peer);
		return;
	}
	m->mr_sync_s = s;
	m->mr_sync_at = now_ns();
	evtimer_add(m->mr_sync_ev, &tv);
}

static void
in_sync_check(evutil_socket_t fd, short what, void *arg)
{
	struct mirror *m = arg;
	struct session *s = m->mr_sync_s;
	struct cr *c = &m->mr_cr;
	struct timeval tv = { 0, 20000 };

	(void)fd; (void)what;
	/* A session that ended (session_drop) left nothing to finish. */
	if (s == NULL)
		return;
	(void)session_check_flushes(m);
	if ((s = m->mr_sync_s) == NULL)
		return;		/* that ended the session */
	if (c->c_nmarks != s->s_cr_marks) {
		/* Marked since this side's record went to the primary (a
		 * write the full activity log could not hold): the primary
		 * has not had those. */
		m->mr_sync_s = NULL;
		log_warnx("peer %s: extents marked since this side's change "
		    "record went to the primary: the disk stays inconsistent "
		    "until the next resync", s->s_peer);
		return;
	}
	if (c->c_durable_now <= m->mr_sync_at) {
		storage_flush_bg(&m->mr_st);	/* unless one runs */
		evtimer_add(m->mr_sync_ev, &tv);
		return;
	}
	m->mr_sync_s = NULL;
	/* Whatever this side had that the primary lacked was in the union
	 * the primary saved and copied over: nothing is owed any more. */
	for (uint64_t e = cr_next(c, 0); e < c->c_nbits; e = cr_next(c, e + 1))
		cr_clear(c, e);
	c->c_m.md_flags &= ~META_F_INCONSISTENT;
	c->c_unsaved = 1;
	if (cr_save(c) != 0) {	/* the file still says inconsistent */
		session_fail(s, "%s", METADATA_FAILED);
		return;
	}
	m->mr_disk = "up-to-date";
	notify_status("primary %s connected; up to date", s->s_peer);
	log_info("peer %s: the mirror is up to date", s->s_peer);
}

int
session_check_flushes(struct mirror *m)
{
	struct cr *c = &m->mr_cr;

	cr_check_flushes(c);
	if (c->c_errors_seen == m->mr_errors_told)
		return 0;
	m->mr_errors_told = c->c_errors_seen;
	if (m->mr_active == NULL)
		return 0;
	session_fail(m->mr_active, "the disk failed a flush: what it may "
	    "have lost is marked, for the resync after the next hello");
	return 1;
}

void
session_reconfigured(struct mirror *m)
{
	struct timeval tv = { (time_t)m->mr_cfg.session_timeout, 0 };

	if (m->mr_active != NULL)
		stream_set_timeout(m->mr_active->s_st, &tv);
}

const char *
session_active_peer(struct mirror *m)
{
	return m->mr_active != NULL ? m->mr_active->s_peer : NULL;
}

/*
 * Handles one whole frame at the head of in (header still there).
 * Returns 0 to go on, -1 when the session failed or is closing.
 */
static int
handle_frame(struct session *s, const struct wire_hdr *h, struct evbuffer *in)
{
	uint8_t hello[WIRE_HELLO_SIZE];
	struct wire_hdr pong;

	evbuffer_drain(in, WIRE_HDR_SIZE);
	if (!s->s_hello) {
		if (h->type != WIRE_HELLO) {
			session_fail(s, "expected a hello, got %s",
			    wire_type_name(h->type));
			return -1;
		}
		evbuffer_remove(in, hello, h->plen);
		handle_hello(s, hello, h->plen);
		return s->s_closing ? -1 : 0;
	}
	switch (h->type) {
	case WIRE_WRITE:
	case WIRE_WRITE_ZEROES:
	case WIRE_TRIM:
	case WIRE_FLUSH:
	case WIRE_READ_REQ:
	case WIRE_CSUM_REQ:
		return handle_op(s, h, in);
	case WIRE_PING:
		evbuffer_drain(in, h->plen);
		if (h->frontier > s->s_last_pfrontier) {
			fmap_frontier(s, h->frontier);
			s->s_last_pfrontier = h->frontier;
		}
		if (h->flags & WIRE_F_IN_SYNC)
			m_in_sync(s);
		if (!(h->flags & WIRE_F_PONG)) {
			memset(&pong, 0, sizeof(pong));
			pong.type = WIRE_PING;
			pong.flags = WIRE_F_PONG;
			pong.seq = h->seq;
			send_frame(s, &pong, NULL);
		}
		/* An idle session's look; ending it may free s. */
		return session_check_flushes(s->s_m) ? -1 : 0;
	case WIRE_GOODBYE:
		log_info("peer %s: goodbye", s->s_peer);
		evbuffer_drain(in, h->plen);
		s->s_closing = 1;	/* acks of what is in flight still go */
		stream_set_reading(s->s_st, 0);
		if (s->s_refs == 0)
			session_drop(s);
		return -1;
	default:
		session_fail(s, "unexpected %s frame", wire_type_name(h->type));
		return -1;
	}
}

static void
session_read(struct stream *st, void *arg)
{
	struct session *s = arg;
	struct evbuffer *in = stream_input(st);
	struct wire_hdr h;
	uint8_t *p;
	int rc;

	while (!s->s_closing && s->s_st != NULL) {
		if (s->s_hello && must_pause(s)) {
			s->s_paused = 1;
			stream_set_reading(st, 0);
			return;
		}
		if ((p = evbuffer_pullup(in, WIRE_HDR_SIZE)) == NULL)
			return;		/* not a whole header yet */
		rc = wire_decode_hdr(p, WIRE_HDR_SIZE, &s->s_lim, &h);
		if (rc != 0) {
			session_fail(s, "%s", wire_strerror(rc));
			return;
		}
		if (evbuffer_get_length(in) < WIRE_HDR_SIZE + (size_t)h.plen)
			return;		/* not the whole frame yet */
		if (handle_frame(s, &h, in) != 0)
			return;
	}
}

static void
session_write(struct stream *st, void *arg)
{
	struct session *s = arg;

	(void)st;
	if (s->s_closing && s->s_refs == 0)
		session_drop(s);
	else if (s->s_paused)
		session_resume_all(s->s_m);
}

/*
 * Logs why a connection failed: the OpenSSL errors the stream kept, then
 * the certificate verdict; failing both, the socket error.
 */
static void
log_conn_error(struct session *s, struct stream *st, int sockerr,
    const char *what)
{
	SSL *ssl = stream_ssl(st);
	unsigned long e;
	char buf[256];
	int n = 0;
	long vr = SSL_get_verify_result(ssl);

	while ((e = stream_tls_error(st)) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		log_warnx("peer %s: %s: %s", s->s_peer, what, buf);
		n++;
	}
	tls_log_errors(s->s_peer, what, vr != X509_V_OK ? ssl : NULL);
	if (n == 0 && vr == X509_V_OK)
		log_warnx("peer %s: %s: %s", s->s_peer, what, sockerr != 0 ?
		    strerror(sockerr) : "connection closed");
}

static void
session_tls_up(struct stream *st, void *arg)
{
	struct session *s = arg;

	(void)st;
	s->s_tls_up = 1;
	log_debug("peer %s: TLS established", s->s_peer);
}

static void
session_end(struct stream *st, enum stream_end what, int err, void *arg)
{
	struct session *s = arg;

	if (what == STREAM_TIMEOUT) {
		session_fail(s, "no frame for %u s",
		    s->s_m->mr_cfg.session_timeout);
		return;
	}
	if (!s->s_tls_up)
		log_conn_error(s, st, err, "TLS handshake failed");
	else if (what != STREAM_EOF && !s->s_closing)
		log_conn_error(s, st, err, "connection lost");
	else if (s->s_hello && !s->s_closing)
		log_warnx("peer %s: connection closed by the primary "
		    "without a goodbye", s->s_peer);
	else
		log_debug("peer %s: closed by the peer", s->s_peer);
	session_drop(s);
}

/* Input limit: a whole frame of the largest payload, and a header. */
#define SESSION_IN_MAX	(2 * (WIRE_HDR_SIZE + (size_t)MIRROR_MAX_PAYLOAD))

static const struct stream_cbs session_cbs = {
	.read = session_read,
	.drained = session_write,
	.connected = session_tls_up,
	.end = session_end,
};

static void
hello_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd; (void)what;
	session_fail(s, "no hello within %u s (mirror.hello_timeout)",
	    s->s_m->mr_cfg.hello_timeout);
}

static void
listener_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct mirror *m = arg;
	struct session *s;
	struct timeval tv = { (time_t)m->mr_cfg.hello_timeout, 0 };
	char host[INET6_ADDRSTRLEN], port[8];
	SSL *ssl;
	int one = 1;

	(void)l;
	if (getnameinfo(sa, (socklen_t)salen, host, sizeof(host), port,
	    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(host, sizeof(host), "?");
	if (m->mr_stopping) {
		evutil_closesocket(fd);
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (ssl = tls_ssl_new(m->mr_ssl, m->mr_cfg.tls_peer_name)) == NULL) {
		log_warnx("peer %s:%s: cannot set up a connection", host, port);
		free(s);
		evutil_closesocket(fd);
		return;
	}
	snprintf(s->s_peer, sizeof(s->s_peer), sa->sa_family == AF_INET6 ?
	    "[%s]:%s" : "%s:%s", host, port);
	s->s_m = m;
	s->s_lim.max_payload = 0;	/* only a hello, exempt, before hello */
	s->s_lim.volume_size = 0;
	s->s_lim.align = MIRROR_ALIGN;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	s->s_st = stream_new_tls_accept(m->mr_base, fd, ssl, SESSION_IN_MAX, 0,
	    &session_cbs, s);
	s->s_timer = evtimer_new(m->mr_base, hello_timeout, s);
	if (s->s_st == NULL || s->s_timer == NULL) {
		log_warnx("peer %s: cannot set up a connection", s->s_peer);
		if (s->s_st != NULL)
			stream_free(s->s_st);
		else
			evutil_closesocket(fd);
		if (s->s_timer != NULL)
			event_free(s->s_timer);
		free(s);
		return;
	}
	s->s_next = m->mr_sessions;
	m->mr_sessions = s;
	m->mr_nsessions++;
	stream_set_reading(s->s_st, 1);
	evtimer_add(s->s_timer, &tv);
	log_debug("peer %s: connected", s->s_peer);
}

static void
listener_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what;
	evconnlistener_enable(arg);
}

static void
listener_error(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();

	(void)arg;
	log_warnx("listener: accept: %s", evutil_socket_error_to_string(err));
	if (err == EMFILE || err == ENFILE) {
		/* Out of descriptors: pause a second instead of spinning. */
		struct timeval tv = { 1, 0 };
		evconnlistener_disable(l);
		event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT,
		    listener_resume, l, &tv);
	}
}

int
session_listen(struct mirror *m, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char host[256], port[16];
	int rc;

	if (config_split_hostport(m->mr_cfg.listen, host, sizeof(host), port,
	    sizeof(port)) != 0) {
		snprintf(err, errlen, "mirror.listen \"%s\": not host:port",
		    m->mr_cfg.listen);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "mirror.listen %s: %s", m->mr_cfg.listen,
		    gai_strerror(rc));
		return -1;
	}
	m->mr_listener = evconnlistener_new_bind(m->mr_base, listener_accept, m,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    64, res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (m->mr_listener == NULL) {
		snprintf(err, errlen, "mirror.listen %s: %s", m->mr_cfg.listen,
		    strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(m->mr_listener, listener_error);
	return 0;
}

/*
 * Stops reading everywhere and says goodbye. A session with ops in flight
 * stays until their acks have gone (session_write drops it then).
 */
void
session_shutdown_all(struct mirror *m, const char *reason)
{
	struct session *s, *next;

	for (s = m->mr_sessions; s != NULL; s = next) {
		next = s->s_next;
		if (s->s_st == NULL || s->s_closing)
			continue;
		if (s->s_refs == 0) {
			if (s->s_hello)
				send_goodbye(s, reason);
			session_close(s);
		} else {
			s->s_goodbye = reason;
			s->s_closing = 1;
			stream_set_reading(s->s_st, 0);
		}
	}
}

/* At exit, after the loop: frees what is left. */
void
session_free_all(struct mirror *m)
{
	while (m->mr_sessions != NULL) {
		struct session *s = m->mr_sessions;

		if (s->s_st != NULL) {
			stream_free(s->s_st);
			s->s_st = NULL;
		}
		s->s_refs = 0;
		m->mr_stopping = 0;	/* no stop check from session_free */
		session_free(s);
	}
	if (m->mr_listener != NULL)
		evconnlistener_free(m->mr_listener);
	m->mr_listener = NULL;
}
