/*
 * nbd.c: duet-primary's NBD front end. Listening sockets (primary.nbd_socket,
 * and primary.nbd_listen if set), one connection per client, the handshake,
 * requests in and replies out. proto/nbd.h does every encode and decode and
 * judges each request; io.c carries accepted requests out. See proto/nbd.h
 * for the handshake step by step; this file follows it.
 *
 * A connection goes through
 *
 *   CS_CFLAGS   greeting sent on accept; waiting for the 4 client flag bytes
 *   CS_OPTS     options until EXPORT_NAME or GO (NBD_CONN_HS_TIMEOUT s for
 *               the whole handshake)
 *   CS_TRANS    requests: each is refused (answered at once; a refused
 *               WRITE once its payload has been read past), answered here
 *               (CACHE, FAST_ZERO), or handed to io.c (io_submit), which
 *               answers it through nbd_reply() in its own time and order
 *
 * and, from any of them, closing (c_closing): no more reading; the socket
 * is closed once every request in flight is answered and the output is
 * flushed, or NBD_CONN_CLOSE_TIMEOUT s after the last answer for a client
 * that does not read. DISC, ABORT, a protocol error and nbd_shutdown()
 * (after a drain, below) all close this way (requests still unread then
 * are never started, and the client sees the connection close without
 * their answers); EOF or a socket error drops the socket at once. At
 * nbd_shutdown(), a connection in CS_TRANS with requests in flight drains
 * first (c_draining): it goes on reading, answers every new request with
 * NBD_ESHUTDOWN ("The error value issued in respect of these requests and
 * any subsequently received requests SHOULD be NBD_ESHUTDOWN"), and
 * closes once the last request in flight is answered.
 *
 * Who frees what: the connection owns its stream (c_s, NULL once the
 * socket is gone). Each request handed to io.c holds a pointer to the
 * connection (pr_conn) and counts in c_inflight; io.c frees the request
 * (nbd_reply -> io_free), and the connection struct is freed once its
 * socket is gone and c_inflight is 0. A client that vanishes thus loses
 * only its own unanswered requests.
 *
 * Re-entrancy: io.c may call nbd_reply(), nbd_pause() and nbd_resume()
 * from anywhere on the event thread, also from inside io_submit() while
 * conn_read() is on the stack. Those entry points therefore never free a
 * connection, never close a socket and never read requests themselves:
 * they only write replies, change flags and activate the connection's
 * c_kick event, whose callback (like the stream callbacks) does the
 * reading, closing and freeing from the top of the loop.
 *
 * Memory: per connection at most NBD_CONN_MAX_INFLIGHT requests in flight,
 * and no reading while the output queued plus the READ data still to come
 * exceeds NBD_CONN_OUT_MAX (resuming below half of it): counting the reads
 * in flight keeps a client that does not read its answers from holding
 * more than about NBD_CONN_OUT_MAX + PRIMARY_MAX_BLOCK. The input buffer
 * holds at most about two maximal WRITEs (NBD_CONN_IN_MAX); a WRITE is
 * only allocated once its whole payload is buffered. nbd_pause() stops all
 * request reading while io.c's window is full. Across all connections,
 * no request is read while the WRITE data io.c holds, with the engine's
 * pieces of TRIMs and WRITE_ZEROES (tg_op_extra), exceeds
 * primary.max_inflight_bytes (resuming below half of it): without a
 * mirror, the window does not bound what a slow disk has yet to take.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common/config.h"
#include "common/log.h"
#include "common/stream.h"
#include "common/unixsock.h"
#include "common/util.h"
#include "primary/primary.h"
#include "proto/nbd.h"

#define NBD_CONN_MAX_INFLIGHT	256		/* requests per connection */
#define NBD_CONN_OUT_MAX	(8u << 20)	/* pause reading above this */
#define NBD_CONN_HS_TIMEOUT	30		/* seconds for the handshake */
#define NBD_CONN_CLOSE_TIMEOUT	5		/* seconds to flush at close */
/* Input limit: room for two maximal WRITEs. */
#define NBD_CONN_IN_MAX \
	(2 * (NBD_REQUEST_SIZE + (size_t)PRIMARY_MAX_BLOCK))
#define NBD_BACKLOG		128

/* What the server offers in the greeting. */
#define NBD_HFLAGS	(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)

enum conn_state {
	CS_CFLAGS,
	CS_OPTS,
	CS_TRANS,
};

struct nbd_conn {
	struct primary	*c_p;
	struct nbd_conn	*c_next;	/* p_conns */
	struct nbd_conn	**c_prevp;
	struct stream	*c_s;		/* NULL once the socket is gone */
	struct event	*c_timer;	/* handshake, then close timeout */
	struct event	*c_kick;	/* deferred read / close / free */
	unsigned	 c_id;
	char		 c_peer[INET6_ADDRSTRLEN + 8];	/* "unix", addr:port */
	enum conn_state	 c_state;
	uint32_t	 c_cflags;
	struct nbd_limits c_lim;
	uint16_t	 c_tflags;
	int		 c_closing;	/* no more reading; close when done */
	int		 c_draining;	/* stopping: ESHUTDOWN to new requests */
	int		 c_close_armed;	/* c_timer is the close timeout */
	int		 c_outfull;	/* reading paused for output */
	unsigned	 c_inflight;	/* requests io.c holds */
	uint64_t	 c_pend_read;	/* READ bytes io.c will hand back */
	unsigned	 c_nrefused;	/* requests refused so far */

	/* A refused WRITE whose payload is being discarded. */
	uint64_t	 c_skip;	/* payload bytes still to drain */
	uint64_t	 c_skip_handle;
	int		 c_skip_err;
};

/*
 * conn_read() steps: go on, wait for more input (the stream calls back on
 * every read, and the step looks again), stop (closing).
 */
enum { STEP_OK, STEP_WAIT, STEP_STOP };

static unsigned nbd_next_id;	/* client numbers for the log */
static struct log_every nbd_refused;	/* max_clients reached */

/* ---- Per-request decisions (pure: no connection, no I/O) ------------- */

enum req_action {
	RA_SUBMIT,	/* hand to io.c */
	RA_REPLY,	/* answer now with *err (0 or an NBD error) */
	RA_SKIP,	/* refused WRITE: discard its payload, answer *err */
	RA_DISC,	/* finish what is in flight, close */
};

/*
 * What to do with a decoded request under lim. nbd_check_request holds it
 * to the limits; on top of that, CACHE is answered at once (the local
 * volume needs no prefetch) and FAST_ZERO gets NBD_ENOTSUP: zeroing goes
 * to the mirror as well, so it cannot be promised to be fast ("the server
 * MUST fail quickly with NBD_ENOTSUP" when it is not; the client then
 * writes the zeroes itself).
 */
static enum req_action
req_decide(const struct nbd_request *req, const struct nbd_limits *lim,
    int *err)
{
	int rc;

	*err = 0;
	if (req->type == NBD_CMD_DISC)
		return RA_DISC;
	rc = nbd_check_request(req, lim);
	if (rc != 0) {
		*err = rc;
		return nbd_request_payload(req) > 0 ? RA_SKIP : RA_REPLY;
	}
	if (req->type == NBD_CMD_CACHE)
		return RA_REPLY;
	if (req->type == NBD_CMD_WRITE_ZEROES &&
	    (req->flags & NBD_CMD_FLAG_FAST_ZERO)) {
		*err = NBD_ENOTSUP;
		return RA_REPLY;
	}
	return RA_SUBMIT;
}

/* A request that comes while the server stops. */
static enum req_action
req_shutdown(const struct nbd_request *req, int *err)
{
	*err = NBD_ESHUTDOWN;
	return nbd_request_payload(req) > 0 ? RA_SKIP : RA_REPLY;
}

/* Data bytes a request carries in pr_data: in (WRITE) or out (READ). */
static uint32_t
req_data_len(const struct nbd_request *req)
{
	return req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE ?
	    req->length : 0;
}

/*
 * The NBD error for a host errno from io.c. The protocol knows only a few
 * values ("the server SHOULD map ... to one of the values listed"); the
 * rest become EIO, the generic one.
 */
static uint32_t
reply_errno(int e)
{
	switch (e) {
	case 0:
		return 0;
	case EPERM:
	case EACCES:
	case EROFS:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

/* Whether the export name a client asked for is ours ("" selects it too). */
static int
export_name_ok(const struct config *cfg, const uint8_t *name, uint32_t len)
{
	return len == 0 || (len == strlen(cfg->vol_name) &&
	    memcmp(name, cfg->vol_name, len) == 0);
}

/* A client-supplied name, printable and bounded, for the log. */
static void
name_for_log(char *out, size_t outlen, const uint8_t *name, uint32_t len)
{
	size_t i, n = MIN((size_t)len, outlen - 1);

	for (i = 0; i < n; i++)
		out[i] = name[i] >= 0x20 && name[i] < 0x7f ? (char)name[i] :
		    '?';
	out[n] = '\0';
}

/* ---- Connection lifetime --------------------------------------------- */

static void
conn_log_warn(struct nbd_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
conn_log_warn(struct nbd_conn *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warnx("client %u (%s): %s", c->c_id, c->c_peer, msg);
}

/* Frees the struct: only once the socket is gone and nothing is in flight. */
static void
conn_free(struct nbd_conn *c)
{
	struct primary *p = c->c_p;

	VERIFY(c->c_s == NULL && c->c_inflight == 0);
	*c->c_prevp = c->c_next;
	if (c->c_next != NULL)
		c->c_next->c_prevp = c->c_prevp;
	p->p_nconns--;
	event_free(c->c_timer);
	event_free(c->c_kick);
	free(c);
	if (p->p_stopping && p->p_nconns == 0)
		primary_check_stopped(p);
}

/*
 * The socket is gone (or is closed now); the struct stays while io.c holds
 * requests of this connection. Callbacks only (may free c).
 */
static void
conn_drop(struct nbd_conn *c)
{
	if (c->c_s != NULL) {
		stream_free(c->c_s);
		c->c_s = NULL;
		c->c_p->p_nlive--;
		if (c->c_inflight > 0)
			log_debug("client %u (%s): closed, %u requests in "
			    "flight dropped", c->c_id, c->c_peer,
			    c->c_inflight);
		else
			log_debug("client %u (%s): closed", c->c_id,
			    c->c_peer);
	}
	event_del(c->c_timer);
	event_del(c->c_kick);
	if (c->c_inflight == 0)
		conn_free(c);
}

/* Schedules conn_kick_cb: safe from any entry point. */
static void
conn_kick(struct nbd_conn *c)
{
	event_active(c->c_kick, EV_TIMEOUT, 0);
}

/*
 * A closing connection: once nothing is in flight, close as soon as the
 * output is flushed, or after NBD_CONN_CLOSE_TIMEOUT. Callbacks only.
 */
static void
conn_close_check(struct nbd_conn *c)
{
	struct timeval tv = { NBD_CONN_CLOSE_TIMEOUT, 0 };

	if (c->c_s == NULL) {
		if (c->c_inflight == 0)
			conn_free(c);
		return;
	}
	if (c->c_inflight > 0)
		return;
	if (evbuffer_get_length(stream_output(c->c_s)) == 0) {
		conn_drop(c);
		return;
	}
	if (!c->c_close_armed) {
		c->c_close_armed = 1;
		event_del(c->c_timer);
		evtimer_add(c->c_timer, &tv);
	}
}

/* Stop reading; close once the answers are out (deferred). */
static void
conn_close(struct nbd_conn *c)
{
	if (c->c_s == NULL || c->c_closing)
		return;
	c->c_closing = 1;
	stream_set_reading(c->c_s, 0);
	conn_kick(c);
}

/* Logs a protocol error with its reason and closes. */
static void
conn_fail(struct nbd_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
conn_fail(struct nbd_conn *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	conn_log_warn(c, "%s; closing the connection", msg);
	conn_close(c);
}

/*
 * Whether the output side allows reading: output queued plus READ data
 * still to come over NBD_CONN_OUT_MAX pauses, below half resumes.
 */
static int
conn_out_full(struct nbd_conn *c)
{
	uint64_t n;

	n = evbuffer_get_length(stream_output(c->c_s)) +
	    c->c_pend_read;
	if (c->c_outfull && n < NBD_CONN_OUT_MAX / 2)
		c->c_outfull = 0;
	else if (!c->c_outfull && n > NBD_CONN_OUT_MAX)
		c->c_outfull = 1;
	return c->c_outfull;
}

/* Whether c may read now. Requests also wait for io.c and the window. */
static int
conn_may_read(struct nbd_conn *c)
{
	if (c->c_s == NULL || c->c_closing || conn_out_full(c))
		return 0;
	if (c->c_draining)
		return 1;	/* nothing it reads goes to io.c */
	if (c->c_state == CS_TRANS && (c->c_p->p_paused || c->c_p->p_wfull ||
	    c->c_inflight >= NBD_CONN_MAX_INFLIGHT))
		return 0;
	return 1;
}

/*
 * Something that may let c read (or close) again has happened: re-enable
 * reading and kick it for what is already buffered. Entry points only
 * schedule; nothing here frees c.
 */
static void
conn_update(struct nbd_conn *c)
{
	if (c->c_s == NULL || c->c_closing) {
		if (c->c_inflight == 0)
			conn_kick(c);
		return;
	}
	if (!conn_may_read(c) ||
	    stream_reading(c->c_s))
		return;
	stream_set_reading(c->c_s, 1);
	/* Requests may be buffered already: the socket need not signal. */
	conn_kick(c);
}

/* ---- Replies ---------------------------------------------------------- */

/*
 * One request's reply: err is an NBD error. A successful READ carries len
 * bytes of data. With structured replies a READ is answered in one chunk,
 * OFFSET_DATA or ERROR, flagged DONE (so DF reads are always satisfied);
 * everything else gets a simple reply.
 */
static void
conn_reply(struct nbd_conn *c, uint16_t cmd, uint64_t handle, uint32_t err,
    uint64_t off, const void *data, uint32_t len)
{
	struct evbuffer *out;
	uint8_t hdr[NBD_CHUNK_HDR_SIZE + 6 + 128];
	const char *msg;
	long n;

	if (c->c_s == NULL)
		return;
	out = stream_output(c->c_s);
	if (cmd == NBD_CMD_READ && c->c_lim.structured) {
		if (err == 0) {
			VERIFY(nbd_encode_offset_data_hdr(hdr,
			    NBD_REPLY_FLAG_DONE, handle, off, len) == 0);
			evbuffer_add(out, hdr, NBD_OFFSET_DATA_HDR_SIZE);
			evbuffer_add(out, data, len);
			return;
		}
		msg = strerror((int)err);	/* NBD errors are Linux's */
		n = nbd_encode_error_chunk(hdr, sizeof(hdr),
		    NBD_REPLY_FLAG_DONE, handle, err, msg,
		    MIN(strlen(msg), (size_t)128));
		VERIFY(n > 0);
		evbuffer_add(out, hdr, (size_t)n);
		return;
	}
	nbd_encode_simple_reply(hdr, err, handle);
	evbuffer_add(out, hdr, NBD_SIMPLE_REPLY_SIZE);
	if (cmd == NBD_CMD_READ && err == 0)
		evbuffer_add(out, data, len);
}

/* A request refused by this file: warn once per client, then debug (a
 * stopping server's ESHUTDOWN is not a refusal). */
static void
req_refused(struct nbd_conn *c, const struct nbd_request *req, int err)
{
	if (err == NBD_ESHUTDOWN)
		return;		/* the stop is logged once */
	if (c->c_nrefused++ == 0)
		conn_log_warn(c, "%s %llu+%u (flags 0x%x) refused: %s (further "
		    "refusals logged at debug level)", nbd_cmd_name(req->type),
		    (unsigned long long)req->offset, req->length, req->flags,
		    strerror(err));
	else
		log_debug("client %u (%s): %s %llu+%u (flags 0x%x) refused: "
		    "%s", c->c_id, c->c_peer, nbd_cmd_name(req->type),
		    (unsigned long long)req->offset, req->length, req->flags,
		    strerror(err));
}

/* A request's WRITE data or pieces left io.c: below half the limit,
 * every connection may read requests again. */
static void
write_data_done(struct primary *p, uint64_t len)
{
	VERIFY(p->p_wbytes >= len);
	p->p_wbytes -= len;
	if (p->p_wfull && p->p_wbytes <= p->p_cfg.max_inflight_bytes / 2) {
		struct nbd_conn *c;

		p->p_wfull = 0;
		for (c = p->p_conns; c != NULL; c = c->c_next)
			conn_update(c);
	}
}

void
nbd_reply(struct preq *r)
{
	struct nbd_conn *c = r->pr_conn;
	struct primary *p = r->pr_p;
	uint16_t cmd = r->pr_cmd;
	uint64_t len = r->pr_op.len;

	if (r->pr_wcost > 0)
		write_data_done(p, r->pr_wcost);
	if (c == NULL) {		/* not ours; see primary.h */
		io_free(p, r);
		return;
	}
	VERIFY(c->c_inflight > 0);
	conn_reply(c, cmd, r->pr_handle, reply_errno(r->pr_status),
	    r->pr_op.off, r->pr_data, (uint32_t)len);
	io_free(p, r);
	c->c_inflight--;
	if (cmd == NBD_CMD_READ) {
		VERIFY(c->c_pend_read >= len);
		c->c_pend_read -= len;
	}
	if (c->c_draining && c->c_inflight == 0)
		conn_close(c);
	conn_update(c);
}

/* ---- Handshake -------------------------------------------------------- */

static void
opt_reply(struct nbd_conn *c, uint32_t option, uint32_t type)
{
	uint8_t buf[NBD_OPT_REPLY_HDR_SIZE];

	nbd_encode_opt_reply_hdr(buf, option, type, 0);
	evbuffer_add(stream_output(c->c_s), buf, sizeof(buf));
}

/* An error reply with a short message, logged at debug. */
static void
opt_error(struct nbd_conn *c, uint32_t option, uint32_t type, const char *msg)
{
	uint8_t buf[NBD_OPT_REPLY_HDR_SIZE + 256];
	long n;

	log_debug("client %u (%s): option %s: %s", c->c_id, c->c_peer,
	    nbd_opt_name(option), msg);
	n = nbd_encode_rep_err(buf, sizeof(buf), option, type, msg,
	    MIN(strlen(msg), (size_t)256));
	VERIFY(n > 0);
	evbuffer_add(stream_output(c->c_s), buf, (size_t)n);
}

static void
conn_transmission(struct nbd_conn *c)
{
	c->c_state = CS_TRANS;
	event_del(c->c_timer);
	log_debug("client %u (%s): transmission, %s replies, flags 0x%04x",
	    c->c_id, c->c_peer, c->c_lim.structured ? "structured" : "simple",
	    c->c_tflags);
}

/* NBD_OPT_GO / NBD_OPT_INFO. */
static int
opt_go(struct nbd_conn *c, const struct nbd_opt_hdr *h, const uint8_t *pl)
{
	struct config *cfg = &c->c_p->p_cfg;
	struct evbuffer *out = stream_output(c->c_s);
	struct nbd_opt_export e;
	uint8_t buf[NBD_OPT_REPLY_HDR_SIZE + 256];
	char name[64], desc[128];
	long n;
	int rc;

	if ((rc = nbd_decode_opt_go(pl, h->length, &e)) != 0) {
		opt_error(c, h->option, NBD_REP_ERR_INVALID, nbd_strerror(rc));
		return STEP_OK;
	}
	if (!export_name_ok(cfg, e.name, e.name_len)) {
		name_for_log(name, sizeof(name), e.name, e.name_len);
		conn_log_warn(c, "%s: no export \"%s\"",
		    nbd_opt_name(h->option), name);
		opt_error(c, h->option, NBD_REP_ERR_UNKNOWN, "no such export");
		return STEP_OK;
	}
	c->c_tflags = nbd_tflags(&c->c_lim) | NBD_FLAG_CAN_MULTI_CONN;
	nbd_encode_info_export(buf, h->option, c->c_lim.export_size,
	    c->c_tflags);
	evbuffer_add(out, buf, NBD_REP_INFO_EXPORT_SIZE);
	nbd_encode_info_block_size(buf, h->option, c->c_lim.min_block,
	    c->c_lim.pref_block, c->c_lim.max_block);
	evbuffer_add(out, buf, NBD_REP_INFO_BLOCK_SIZE_SIZE);
	if (e.reqs & (UINT32_C(1) << NBD_INFO_NAME)) {
		n = nbd_encode_info_name(buf, sizeof(buf), h->option,
		    cfg->vol_name, strlen(cfg->vol_name));
		VERIFY(n > 0);
		evbuffer_add(out, buf, (size_t)n);
	}
	if (e.reqs & (UINT32_C(1) << NBD_INFO_DESCRIPTION)) {
		snprintf(desc, sizeof(desc), "duet volume %s, %s replication",
		    cfg->vol_name, config_mode_name(cfg->mode));
		n = nbd_encode_info_description(buf, sizeof(buf), h->option,
		    desc, strlen(desc));
		VERIFY(n > 0);
		evbuffer_add(out, buf, (size_t)n);
	}
	opt_reply(c, h->option, NBD_REP_ACK);
	if (h->option == NBD_OPT_GO)
		conn_transmission(c);
	return STEP_OK;
}

/* One whole option (header decoded, payload pl[h->length]). */
static int
opt_handle(struct nbd_conn *c, const struct nbd_opt_hdr *h, const uint8_t *pl)
{
	struct config *cfg = &c->c_p->p_cfg;
	struct nbd_opt_export e;
	uint8_t buf[NBD_EXPORT_NAME_REPLY_SIZE + NBD_OPT_REPLY_HDR_SIZE + 64];
	char name[64];
	size_t n;
	long ln;

	switch (h->option) {
	case NBD_OPT_EXPORT_NAME:
		/* No error reply exists for this option: close instead. */
		if (nbd_decode_opt_export_name(pl, h->length, &e) != 0) {
			conn_fail(c, "EXPORT_NAME: bad name");
			return STEP_STOP;
		}
		if (!export_name_ok(cfg, e.name, e.name_len)) {
			name_for_log(name, sizeof(name), e.name, e.name_len);
			conn_fail(c, "EXPORT_NAME: no export \"%s\"", name);
			return STEP_STOP;
		}
		c->c_tflags = nbd_tflags(&c->c_lim) | NBD_FLAG_CAN_MULTI_CONN;
		n = nbd_encode_export_name_reply(buf, c->c_lim.export_size,
		    c->c_tflags, (c->c_cflags & NBD_FLAG_C_NO_ZEROES) != 0);
		evbuffer_add(stream_output(c->c_s), buf, n);
		conn_transmission(c);
		return STEP_OK;
	case NBD_OPT_GO:
	case NBD_OPT_INFO:
		return opt_go(c, h, pl);
	case NBD_OPT_ABORT:
		log_debug("client %u (%s): ABORT", c->c_id, c->c_peer);
		opt_reply(c, h->option, NBD_REP_ACK);
		conn_close(c);
		return STEP_STOP;
	case NBD_OPT_LIST:
		if (h->length > 0) {
			opt_error(c, h->option, NBD_REP_ERR_INVALID,
			    "LIST takes no data");
			return STEP_OK;
		}
		ln = nbd_encode_rep_server(buf, sizeof(buf), h->option,
		    cfg->vol_name, strlen(cfg->vol_name));
		VERIFY(ln > 0);
		evbuffer_add(stream_output(c->c_s), buf, (size_t)ln);
		opt_reply(c, h->option, NBD_REP_ACK);
		return STEP_OK;
	case NBD_OPT_STRUCTURED_REPLY:
		if (h->length > 0) {
			opt_error(c, h->option, NBD_REP_ERR_INVALID,
			    "STRUCTURED_REPLY takes no data");
			return STEP_OK;
		}
		c->c_lim.structured = 1;	/* a repeat is acked again */
		opt_reply(c, h->option, NBD_REP_ACK);
		return STEP_OK;
	case NBD_OPT_STARTTLS:
		if (h->length > 0)
			opt_error(c, h->option, NBD_REP_ERR_INVALID,
			    "STARTTLS takes no data");
		else
			opt_error(c, h->option, NBD_REP_ERR_POLICY,
			    "TLS is not offered");
		return STEP_OK;
	default:
		/* Its payload was read past: the next option parses fine. */
		opt_error(c, h->option, NBD_REP_ERR_UNSUP, "not supported");
		return STEP_OK;
	}
}

static int
hs_cflags(struct nbd_conn *c, struct evbuffer *in)
{
	uint8_t buf[NBD_CLIENT_FLAGS_SIZE];
	int rc;

	if (evbuffer_get_length(in) < sizeof(buf))
		return STEP_WAIT;
	evbuffer_remove(in, buf, sizeof(buf));
	rc = nbd_decode_client_flags(buf, sizeof(buf), NBD_HFLAGS,
	    &c->c_cflags);
	if (rc != 0) {
		conn_fail(c, "client flags %02x%02x%02x%02x: %s", buf[0],
		    buf[1], buf[2], buf[3], nbd_strerror(rc));
		return STEP_STOP;
	}
	c->c_state = CS_OPTS;
	return STEP_OK;
}

static int
hs_option(struct nbd_conn *c, struct evbuffer *in)
{
	uint8_t buf[NBD_OPT_HDR_SIZE + NBD_OPT_LEN_MAX];
	struct nbd_opt_hdr h;
	size_t avail = evbuffer_get_length(in), need;
	int rc;

	if (avail < NBD_OPT_HDR_SIZE)
		return STEP_WAIT;
	evbuffer_copyout(in, buf, NBD_OPT_HDR_SIZE);
	rc = nbd_decode_opt_hdr(buf, NBD_OPT_HDR_SIZE, NBD_OPT_LEN_MAX, &h);
	if (rc != 0) {
		conn_fail(c, "option: %s", nbd_strerror(rc));
		return STEP_STOP;
	}
	need = NBD_OPT_HDR_SIZE + (size_t)h.length;
	if (avail < need)
		return STEP_WAIT;
	evbuffer_remove(in, buf, need);
	return opt_handle(c, &h, buf + NBD_OPT_HDR_SIZE);
}

/* ---- Transmission ----------------------------------------------------- */

/* Discards a refused WRITE's payload, then answers it. */
static int
tr_skip(struct nbd_conn *c, struct evbuffer *in)
{
	size_t n = MIN((uint64_t)evbuffer_get_length(in), c->c_skip);

	evbuffer_drain(in, n);
	c->c_skip -= n;
	if (c->c_skip > 0)
		return STEP_WAIT;
	conn_reply(c, NBD_CMD_WRITE, c->c_skip_handle, (uint32_t)c->c_skip_err,
	    0, NULL, 0);
	return STEP_OK;
}

/* An accepted request, header drained, payload (if any) buffered. */
static int
tr_submit(struct nbd_conn *c, const struct nbd_request *req,
    struct evbuffer *in)
{
	struct primary *p = c->c_p;
	uint32_t plen = nbd_request_payload(req);
	struct preq *r;

	if ((r = io_alloc(p, req_data_len(req))) == NULL) {
		evbuffer_drain(in, plen);
		log_debug("client %u (%s): %s %llu+%u: no memory", c->c_id,
		    c->c_peer, nbd_cmd_name(req->type),
		    (unsigned long long)req->offset, req->length);
		conn_reply(c, req->type, req->handle, NBD_ENOMEM, req->offset,
		    NULL, 0);
		return STEP_OK;
	}
	r->pr_p = p;
	r->pr_conn = c;
	r->pr_handle = req->handle;
	r->pr_cmd = req->type;
	r->pr_flags = req->flags;
	r->pr_op.off = req->offset;
	r->pr_op.len = req->length;
	if (plen > 0)
		VERIFY(evbuffer_remove(in, r->pr_data, plen) == (int)plen);
	/* Counted first: io_submit may answer at once. */
	c->c_inflight++;
	if (req->type == NBD_CMD_READ)
		c->c_pend_read += req->length;
	/* A WRITE's data; a TRIM's or WRITE_ZEROES' pieces in the engine,
	 * which for up to 4 GiB take up to 3.5 MiB (a data request's are
	 * a thousandth of its data). */
	r->pr_wcost = req->type == NBD_CMD_WRITE ? plen :
	    req->type == NBD_CMD_TRIM || req->type == NBD_CMD_WRITE_ZEROES ?
	    tg_op_extra(p->p_tg, req->offset, req->length) : 0;
	if ((p->p_wbytes += r->pr_wcost) > p->p_cfg.max_inflight_bytes)
		p->p_wfull = 1;
	io_submit(p, r);
	return STEP_OK;
}

static int
tr_request(struct nbd_conn *c, struct evbuffer *in)
{
	uint8_t buf[NBD_REQUEST_SIZE];
	struct nbd_request req;
	size_t avail = evbuffer_get_length(in);
	uint32_t plen;
	int err, rc;

	if (c->c_skip > 0)
		return tr_skip(c, in);
	if (avail < NBD_REQUEST_SIZE)
		return STEP_WAIT;
	evbuffer_copyout(in, buf, sizeof(buf));
	if ((rc = nbd_decode_request(buf, sizeof(buf), &req)) != 0) {
		conn_fail(c, "request: %s", nbd_strerror(rc));
		return STEP_STOP;
	}
	switch (c->c_draining && req.type != NBD_CMD_DISC ?
	    req_shutdown(&req, &err) : req_decide(&req, &c->c_lim, &err)) {
	case RA_DISC:
		evbuffer_drain(in, sizeof(buf));
		log_debug("client %u (%s): DISC, %u requests in flight",
		    c->c_id, c->c_peer, c->c_inflight);
		conn_close(c);
		return STEP_STOP;
	case RA_SKIP:
		evbuffer_drain(in, sizeof(buf));
		req_refused(c, &req, err);
		c->c_skip = nbd_request_payload(&req);
		c->c_skip_handle = req.handle;
		c->c_skip_err = err;
		return STEP_OK;
	case RA_REPLY:
		evbuffer_drain(in, sizeof(buf));
		if (err != 0 && err != NBD_ENOTSUP)
			req_refused(c, &req, err);
		conn_reply(c, req.type, req.handle, (uint32_t)err, req.offset,
		    NULL, 0);
		return STEP_OK;
	case RA_SUBMIT:
		plen = nbd_request_payload(&req);
		if (avail < sizeof(buf) + (size_t)plen)
			return STEP_WAIT;
		evbuffer_drain(in, sizeof(buf));
		return tr_submit(c, &req, in);
	}
	return STEP_STOP;
}

/*
 * Handles everything buffered that may be handled now. Called from the
 * read and kick callbacks only. When it must pause, it disables reading;
 * conn_update() enables it again.
 */
static void
conn_read(struct nbd_conn *c)
{
	struct evbuffer *in = stream_input(c->c_s);
	int rc;

	for (;;) {
		if (c->c_closing)
			return;
		if (!conn_may_read(c)) {
			stream_set_reading(c->c_s, 0);
			return;
		}
		switch (c->c_state) {
		case CS_CFLAGS:
			rc = hs_cflags(c, in);
			break;
		case CS_OPTS:
			rc = hs_option(c, in);
			break;
		default:
			rc = tr_request(c, in);
			break;
		}
		if (rc != STEP_OK)
			return;
	}
}

/* ---- Callbacks -------------------------------------------------------- */

static void
conn_read_cb(struct stream *s, void *arg)
{
	(void)s;
	conn_read(arg);
}

/* Output at or below NBD_CONN_OUT_MAX / 2 after a write. */
static void
conn_write_cb(struct stream *s, void *arg)
{
	struct nbd_conn *c = arg;

	(void)s;
	if (c->c_closing)
		conn_close_check(c);
	else
		conn_update(c);
}

static void
conn_end_cb(struct stream *s, enum stream_end what, int err, void *arg)
{
	struct nbd_conn *c = arg;

	(void)s;
	if (what != STREAM_EOF)
		log_debug("client %u (%s): %s error: %s", c->c_id, c->c_peer,
		    what == STREAM_READ_ERROR ? "read" : "write",
		    strerror(err));
	else
		log_debug("client %u (%s): end of stream%s", c->c_id,
		    c->c_peer, c->c_state == CS_TRANS && !c->c_closing ?
		    " without DISC" : "");
	conn_drop(c);
}

/* Deferred work from the entry points: read on, close, or free. */
static void
conn_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nbd_conn *c = arg;

	(void)fd; (void)what;
	if (c->c_s == NULL || c->c_closing)
		conn_close_check(c);
	else
		conn_read(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nbd_conn *c = arg;

	(void)fd; (void)what;
	if (c->c_close_armed) {
		log_debug("client %u (%s): replies not read within %d s",
		    c->c_id, c->c_peer, NBD_CONN_CLOSE_TIMEOUT);
		conn_drop(c);
	} else {
		conn_fail(c, "handshake not finished within %d s",
		    NBD_CONN_HS_TIMEOUT);
	}
}

static const struct stream_cbs conn_stream_cbs = {
	.read = conn_read_cb,
	.drained = conn_write_cb,
	.end = conn_end_cb,
};

/* ---- Listeners -------------------------------------------------------- */

static void
listener_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct primary *p = arg;
	struct timeval tv = { NBD_CONN_HS_TIMEOUT, 0 };
	uint8_t greeting[NBD_GREETING_SIZE];
	char host[INET6_ADDRSTRLEN], port[8];
	struct nbd_conn *c;
	uint64_t skipped;
	int one = 1;

	(void)l;
	if (p->p_stopping) {
		evutil_closesocket(fd);
		return;
	}
	if (p->p_nlive >= p->p_cfg.max_clients) {
		/* Each client may hold up to NBD_CONN_IN_MAX + NBD_CONN_OUT_MAX
		 * of buffers: closing at once keeps that bounded, and the
		 * client sees the end of the handshake instead of a hang. */
		if (log_every(&nbd_refused, &skipped))
			log_warnx("NBD: client refused: %u clients connected, "
			    "primary.max_clients is %u (%llu more refused "
			    "since the last line)", p->p_nlive,
			    p->p_cfg.max_clients, (unsigned long long)skipped);
		evutil_closesocket(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warnx("NBD: no memory for a new client");
		evutil_closesocket(fd);
		return;
	}
	c->c_p = p;
	c->c_id = ++nbd_next_id;
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
		if (getnameinfo(sa, (socklen_t)salen, host, sizeof(host), port,
		    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
			snprintf(host, sizeof(host), "?");
		snprintf(c->c_peer, sizeof(c->c_peer),
		    sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
		    port);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	} else {
		snprintf(c->c_peer, sizeof(c->c_peer), "unix");
	}
	c->c_lim.export_size = p->p_cfg.vol_size;
	c->c_lim.min_block = PRIMARY_ALIGN;
	c->c_lim.pref_block = PRIMARY_PREF_BLOCK;
	c->c_lim.max_block = PRIMARY_MAX_BLOCK;
	c->c_state = CS_CFLAGS;
	c->c_s = stream_new(p->p_base, fd, NBD_CONN_IN_MAX, NBD_CONN_OUT_MAX / 2,
	    &conn_stream_cbs, c);
	c->c_timer = evtimer_new(p->p_base, conn_timer_cb, c);
	c->c_kick = event_new(p->p_base, -1, 0, conn_kick_cb, c);
	if (c->c_s == NULL || c->c_timer == NULL || c->c_kick == NULL) {
		log_warnx("client %u (%s): cannot set up a connection",
		    c->c_id, c->c_peer);
		if (c->c_s != NULL)
			stream_free(c->c_s);
		else
			evutil_closesocket(fd);
		if (c->c_timer != NULL)
			event_free(c->c_timer);
		if (c->c_kick != NULL)
			event_free(c->c_kick);
		free(c);
		return;
	}
	c->c_next = p->p_conns;
	if (c->c_next != NULL)
		c->c_next->c_prevp = &c->c_next;
	c->c_prevp = &p->p_conns;
	p->p_conns = c;
	p->p_nconns++;
	p->p_nlive++;
	stream_set_reading(c->c_s, 1);
	nbd_encode_greeting(greeting, NBD_HFLAGS);
	evbuffer_add(stream_output(c->c_s), greeting,
	    sizeof(greeting));
	evtimer_add(c->c_timer, &tv);
	log_debug("client %u (%s): connected", c->c_id, c->c_peer);
}

static void
listener_resume(evutil_socket_t fd, short what, void *arg)
{
	struct primary *p = arg;

	(void)fd; (void)what;
	/* By primary, not by listener: one may be gone by now. */
	if (p->p_stopping)
		return;
	if (p->p_nbd_unix != NULL)
		evconnlistener_enable(p->p_nbd_unix);
	if (p->p_nbd_tcp != NULL)
		evconnlistener_enable(p->p_nbd_tcp);
}

static void
listener_error(struct evconnlistener *l, void *arg)
{
	struct primary *p = arg;
	int err = EVUTIL_SOCKET_ERROR();

	log_warnx("NBD listener: accept: %s",
	    evutil_socket_error_to_string(err));
	if (err == EMFILE || err == ENFILE) {
		/* Out of descriptors: pause a second instead of spinning. */
		struct timeval tv = { 1, 0 };

		evconnlistener_disable(l);
		event_base_once(p->p_base, -1, EV_TIMEOUT, listener_resume, p,
		    &tv);
	}
}

/* The Unix socket (common/unixsock.h: 0660, primary.nbd_group). */
static int
listen_unix(struct primary *p, char *err, size_t errlen)
{
	const char *path = p->p_cfg.nbd_socket;
	int fd;

	fd = unixsock_listen(path, p->p_cfg.nbd_group, "primary.nbd_socket",
	    "primary.nbd_group", NBD_BACKLOG, err, errlen);
	if (fd == -1)
		return -1;
	p->p_nbd_unix = evconnlistener_new(p->p_base, listener_accept, p,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (p->p_nbd_unix == NULL) {
		snprintf(err, errlen, "primary.nbd_socket %s: cannot set up "
		    "the listener", path);
		close(fd);
		unlink(path);
		return -1;
	}
	evconnlistener_set_error_cb(p->p_nbd_unix, listener_error);
	return 0;
}

static int
listen_tcp(struct primary *p, char *err, size_t errlen)
{
	const char *addr = p->p_cfg.nbd_listen;
	struct addrinfo hints, *res = NULL, *ai;
	char host[256], port[16];
	int rc, e = 0;

	if (config_split_hostport(addr, host, sizeof(host), port,
	    sizeof(port)) != 0) {
		snprintf(err, errlen, "primary.nbd_listen \"%s\": not "
		    "host:port", addr);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "primary.nbd_listen %s: %s", addr,
		    gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && p->p_nbd_tcp == NULL; ai = ai->ai_next) {
		p->p_nbd_tcp = evconnlistener_new_bind(p->p_base,
		    listener_accept, p, LEV_OPT_CLOSE_ON_FREE |
		    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, NBD_BACKLOG,
		    ai->ai_addr, (int)ai->ai_addrlen);
		if (p->p_nbd_tcp == NULL)
			e = errno;
	}
	freeaddrinfo(res);
	if (p->p_nbd_tcp == NULL) {
		snprintf(err, errlen, "primary.nbd_listen %s: %s", addr,
		    strerror(e));
		return -1;
	}
	evconnlistener_set_error_cb(p->p_nbd_tcp, listener_error);
	return 0;
}

/* Frees the listeners and removes the socket path (idempotent). */
static void
listeners_free(struct primary *p)
{
	struct stat st;

	if (p->p_nbd_unix != NULL) {
		evconnlistener_free(p->p_nbd_unix);
		p->p_nbd_unix = NULL;
		if (lstat(p->p_cfg.nbd_socket, &st) == 0 &&
		    S_ISSOCK(st.st_mode))
			unlink(p->p_cfg.nbd_socket);
	}
	if (p->p_nbd_tcp != NULL) {
		evconnlistener_free(p->p_nbd_tcp);
		p->p_nbd_tcp = NULL;
	}
}

/* ---- Entry points ----------------------------------------------------- */

int
nbd_listen(struct primary *p, char *err, size_t errlen)
{
	struct nbd_limits lim = {
		.export_size = p->p_cfg.vol_size,
		.min_block = PRIMARY_ALIGN,
		.pref_block = PRIMARY_PREF_BLOCK,
		.max_block = PRIMARY_MAX_BLOCK,
	};

	if (nbd_limits_check(&lim) != 0) {
		snprintf(err, errlen, "volume size %llu: NBD block sizes "
		    "%u/%u/%u do not fit", (unsigned long long)lim.export_size,
		    lim.min_block, lim.pref_block, lim.max_block);
		return -1;
	}
	if (listen_unix(p, err, errlen) != 0)
		return -1;
	if (p->p_cfg.nbd_listen[0] != '\0' && listen_tcp(p, err, errlen) != 0) {
		listeners_free(p);
		return -1;
	}
	log_debug("NBD export %s on %s%s%s", p->p_cfg.vol_name,
	    p->p_cfg.nbd_socket, p->p_cfg.nbd_listen[0] != '\0' ? " and " : "",
	    p->p_cfg.nbd_listen);
	return 0;
}

void
nbd_pause(struct primary *p)
{
	struct nbd_conn *c;

	if (p->p_paused)
		return;
	p->p_paused = 1;
	for (c = p->p_conns; c != NULL; c = c->c_next)
		if (c->c_s != NULL && c->c_state == CS_TRANS)
			stream_set_reading(c->c_s, 0);
}

void
nbd_resume(struct primary *p)
{
	struct nbd_conn *c;

	if (!p->p_paused)
		return;
	p->p_paused = 0;
	for (c = p->p_conns; c != NULL; c = c->c_next)
		conn_update(c);
}

/*
 * Stops accepting (and removes the socket path, so new clients are
 * refused rather than left waiting) and closes every client once its
 * answers are out. The closing happens from the loop: this never calls
 * primary_check_stopped() itself.
 */
void
nbd_shutdown(struct primary *p)
{
	struct nbd_conn *c;

	listeners_free(p);
	for (c = p->p_conns; c != NULL; c = c->c_next) {
		if (c->c_s != NULL && !c->c_closing && c->c_state == CS_TRANS &&
		    c->c_inflight > 0) {
			c->c_draining = 1;
			conn_update(c);
		} else {
			conn_close(c);
		}
	}
}

/*
 * At exit, after the loop, once io.c holds no requests of any client:
 * frees every connection and the listeners.
 */
void
nbd_free_all(struct primary *p)
{
	struct nbd_conn *c;

	listeners_free(p);
	while ((c = p->p_conns) != NULL) {
		if (c->c_s != NULL)
			stream_free(c->c_s);
		p->p_conns = c->c_next;
		event_free(c->c_timer);
		event_free(c->c_kick);
		free(c);
	}
	p->p_nconns = p->p_nlive = 0;
}

/* Connections not yet freed, including those whose client is gone while
 * requests of theirs are still in flight. */
unsigned
nbd_clients(struct primary *p)
{
	return p->p_nconns;
}
