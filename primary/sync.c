/*
 * sync.c: passes over the volume that bring the mirror up to date, or
 * check that it is, while clients keep writing.
 *
 *   copy     every extent marked in the change record is read here and
 *            written there; its bit is cleared once the mirror applied it
 *   csum     (primary.resync_checksums) before the copy: every marked
 *            extent is hashed on both sides; equal ones are cleared
 *   verify   (duetctl verify) every extent of a range is hashed on both
 *            sides; different ones are marked and reported
 *
 * A pass is walked in chunks of up to SYNC_CHUNK bytes. Each chunk is a
 * request of its own (TG_OTHER) with a sequence number from the same
 * counter as the clients' writes, so the engine orders it like a write:
 * it reads the chunk after every earlier overlapping write is applied
 * here and before any later one, and its frame (WRITE, WRITE_ZEROES or
 * CSUM_REQ) reaches the mirror in that same sequence position (repl.c's
 * send queue). So a client write racing the copy is never overwritten by
 * an older copy, and the two checksums of a chunk are taken at the same
 * point of the stream: a write in flight cannot cause a false mismatch.
 *
 * Holes (SEEK_HOLE on files) are not read; a chunk that is all holes or
 * zero bytes travels as WRITE_ZEROES, a 48-byte frame.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/ctl.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/util.h"
#include "primary/primary.h"

#define SYNC_CHUNK	(1u << 20)
#define SYNC_DEPTH	8		/* chunks in flight */

enum pass { PASS_NONE, PASS_COPY, PASS_CSUM, PASS_VERIFY };

static const char *const pass_names[] = { "none", "copy", "checksum",
    "verify" };

struct sync {
	enum pass	sy_pass;
	uint64_t	sy_gen;		/* session (and pass) the chunks belong to */
	uint64_t	sy_cursor;	/* next extent to look at */
	uint64_t	sy_stop;	/* extent the pass ends before */
	unsigned	sy_outstanding;
	uint64_t	sy_start_ns;
	uint64_t	sy_total;	/* bytes the pass covers */
	uint64_t	sy_done;	/* bytes finished in this pass */
	uint64_t	sy_issued;	/* bytes issued (rate limit) */
	uint64_t	sy_pass_copied;	/* extents copied in this pass */
	struct preq	*sy_chunk[SYNC_DEPTH];	/* this pass's chunks out */
	struct event	*sy_rate_timer;

	/* verify */
	uint64_t	sy_v_start, sy_v_stop;	/* bytes */
	uint64_t	sy_v_mismatch;	/* extents found different */
	uint64_t	sy_v_checked;	/* extents compared */
	int		sy_v_done;	/* a verify finished */

	/* totals since start (status counters) */
	uint64_t	sy_copied_extents;
	uint64_t	sy_copied_bytes;	/* span of copied extents */
	uint64_t	sy_data_bytes;		/* sent as data, not zeroes */
	uint64_t	sy_csum_same;		/* extents a checksum cleared */
	int		sy_in_sync;	/* the mirror was told it is current */
	uint64_t	sy_run_start_ns;	/* this session's resync */
	uint64_t	sy_run_extents, sy_run_data;
};

static void sync_pump(struct primary *p);

/*
 * A write marked changed while a copy or checksum chunk over it is out
 * (the AL was full, so the mark is its only record) came after the
 * chunk's read: the chunk's answer must not clear that mark, or a crash
 * before the write reaches the mirror would leave it recorded nowhere.
 */
static void
sync_marked(void *arg, uint64_t off, uint64_t len)
{
	struct sync *sy = ((struct primary *)arg)->p_sync;
	struct preq *r;
	int i;

	for (i = 0; i < SYNC_DEPTH; i++)
		if ((r = sy->sy_chunk[i]) != NULL &&
		    off < r->pr_op.off + r->pr_op.len &&
		    r->pr_op.off < off + len)
			r->pr_state |= PR_REMARKED;
}

/* Adds r to sy_chunk (on), or takes it out. */
static void
chunk_track(struct sync *sy, struct preq *r, int on)
{
	int i;

	for (i = 0; i < SYNC_DEPTH; i++)
		if (sy->sy_chunk[i] == (on ? NULL : r)) {
			sy->sy_chunk[i] = on ? r : NULL;
			return;
		}
	VERIFY(!on);	/* at most SYNC_DEPTH out; an old pass's is not in */
}

static void
rate_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what;
	sync_pump(arg);
}

int
sync_init(struct primary *p)
{
	if ((p->p_sync = calloc(1, sizeof(*p->p_sync))) == NULL)
		return -ENOMEM;
	cr_set_mark_hook(&p->p_cr, sync_marked, p);
	p->p_sync->sy_rate_timer = evtimer_new(p->p_base, rate_kick, p);
	return p->p_sync->sy_rate_timer == NULL ? -ENOMEM : 0;
}

void
sync_fini(struct primary *p)
{
	if (p->p_sync != NULL && p->p_sync->sy_rate_timer != NULL)
		event_free(p->p_sync->sy_rate_timer);
	FREE_AND_NULL(&p->p_sync);
}

/* Worker thread. */
int
sync_read_piece(struct primary *p, struct preq *r, uint64_t off,
    uint64_t len, void *buf)
{
	uint64_t pos = off, end = off + len, doff, dlen;
	uint8_t *b = buf;
	int rc;

	while (pos < end) {
		rc = storage_next_data(&p->p_st, pos, &doff, &dlen);
		if (rc < 0)
			return rc;
		if (rc == 1 || doff >= end) {
			memset(b + (pos - off), 0, end - pos);
			break;
		}
		if (doff > pos)
			memset(b + (pos - off), 0, doff - pos);
		dlen = MIN(dlen, end - doff);
		if ((rc = storage_read(&p->p_st, b + (doff - off), dlen, doff)) != 0)
			return rc;
		if (!buf_is_zero(b + (doff - off), dlen))
			__atomic_store_n(&r->pr_nonzero, 1, __ATOMIC_RELEASE);
		pos = doff + dlen;
	}
	return 0;
}

/* ---- passes ---------------------------------------------------------- */

static uint64_t
ext_bytes(const struct primary *p)
{
	return p->p_cfg.extent_size;
}

static void
pass_begin(struct primary *p, enum pass pass, uint64_t first, uint64_t stop)
{
	struct sync *sy = p->p_sync;
	struct cr *c = &p->p_cr;
	uint64_t e, n = 0;

	sy->sy_gen++;		/* chunks of an earlier pass are counted off */
	sy->sy_pass = pass;
	sy->sy_cursor = first;
	sy->sy_stop = stop;
	sy->sy_outstanding = 0;
	memset(sy->sy_chunk, 0, sizeof(sy->sy_chunk));
	sy->sy_start_ns = now_ns();
	sy->sy_done = sy->sy_issued = sy->sy_pass_copied = 0;
	if (pass == PASS_VERIFY)
		n = stop - first;
	else
		for (e = cr_next(c, first); e < stop; e = cr_next(c, e + 1))
			n++;
	sy->sy_total = n * ext_bytes(p);
	log_info("%s: %llu extents (%llu bytes)%s", pass == PASS_VERIFY ?
	    "verify" : pass == PASS_CSUM ? "resync: comparing checksums of" :
	    "resync: copying", (unsigned long long)n,
	    (unsigned long long)sy->sy_total,
	    p->p_cfg.resync_rate ? ", rate-limited" : "");
	sync_pump(p);
}

/* The pass has nothing left in flight and nothing left to issue. */
static void
pass_end(struct primary *p)
{
	struct sync *sy = p->p_sync;
	struct cr *c = &p->p_cr;
	enum pass pass = sy->sy_pass;
	uint64_t ms = (now_ns() - sy->sy_run_start_ns) / 1000000;

	sy->sy_pass = PASS_NONE;
	cr_save(c);		/* cleared and marked bits alike */
	switch (pass) {
	case PASS_VERIFY:
		sy->sy_v_done = 1;
		log_info("verify complete: %llu of %llu extents differ%s",
		    (unsigned long long)sy->sy_v_mismatch,
		    (unsigned long long)sy->sy_v_checked,
		    sy->sy_v_mismatch ? "; marked: `duetctl resync` copies "
		    "them" : "");
		return;
	case PASS_CSUM:
		pass_begin(p, PASS_COPY, 0, c->c_nbits);
		return;
	case PASS_COPY:
		if (c->c_ndirty > 0 && sy->sy_pass_copied > 0) {
			pass_begin(p, PASS_COPY, 0, c->c_nbits);
			return;
		}
		break;
	default:
		return;
	}
	if (c->c_ndirty > 0) {
		log_warnx("resync: %llu extents still differ",
		    (unsigned long long)c->c_ndirty);
		return;
	}
	sy->sy_in_sync = 1;
	repl_in_sync(p);
	notify_status("mirror up to date");
	log_info("resync complete: %llu extents copied, %llu bytes of data, "
	    "in %llu.%03llu s; the mirror is up to date",
	    (unsigned long long)sy->sy_run_extents,
	    (unsigned long long)sy->sy_run_data,
	    (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000));
}

/* SHA-256 of each extent of r's data into out[WIRE_DIGEST_LEN * n]. */
static void
digests(struct primary *p, const struct preq *r, uint8_t *out)
{
	uint64_t pos, n;

	for (pos = 0; pos < r->pr_op.len; pos += n) {
		n = MIN(ext_bytes(p), r->pr_op.len - pos);
		VERIFY(EVP_Digest(r->pr_data + pos, n, out, NULL, EVP_sha256(),
		    NULL) == 1);
		out += WIRE_DIGEST_LEN;
	}
}

int
sync_csum_reply(struct primary *p, struct preq *r, const uint8_t *theirs,
    uint32_t len)
{
	struct sync *sy = p->p_sync;
	uint64_t next = (r->pr_op.len + ext_bytes(p) - 1) / ext_bytes(p), i;
	uint64_t e0 = r->pr_op.off / ext_bytes(p);
	uint8_t *ours;
	int verify = (uint64_t)(uintptr_t)r->pr_arg == sy->sy_gen &&
	    sy->sy_pass == PASS_VERIFY;

	if (len != next * WIRE_DIGEST_LEN)
		return -1;
	if ((uint64_t)(uintptr_t)r->pr_arg != sy->sy_gen)
		return 0;	/* from an abandoned pass */
	VERIFY((ours = malloc(len)) != NULL);
	digests(p, r, ours);
	for (i = 0; i < next; i++) {
		int same = memcmp(ours + i * WIRE_DIGEST_LEN,
		    theirs + i * WIRE_DIGEST_LEN, WIRE_DIGEST_LEN) == 0;

		if (verify) {
			sy->sy_v_checked++;
			if (!same) {
				sy->sy_v_mismatch++;
				cr_mark(&p->p_cr, (e0 + i) * ext_bytes(p), 1);
				log_warnx("verify: extent %llu (bytes %llu+%llu) "
				    "differs on the mirror",
				    (unsigned long long)(e0 + i),
				    (unsigned long long)((e0 + i) * ext_bytes(p)),
				    (unsigned long long)ext_bytes(p));
			}
		} else if (same && !(r->pr_state & PR_REMARKED)) {
			sy->sy_csum_same++;
			cr_clear(&p->p_cr, e0 + i);
		}
	}
	free(ours);
	return 0;
}

/* A chunk is answered: applied (or compared) on the mirror, or lost. */
static void
sync_chunk_done(struct preq *r)
{
	struct primary *p = r->pr_p;
	struct sync *sy = p->p_sync;
	int current = (uint64_t)(uintptr_t)r->pr_arg == sy->sy_gen;
	int failed = (r->pr_state & PR_LOST) || r->pr_local_status != 0;
	uint64_t e, e0 = r->pr_op.off / ext_bytes(p);
	uint64_t e1 = e0 + (r->pr_op.len + ext_bytes(p) - 1) / ext_bytes(p);

	if (r->pr_local_status != 0) {
		log_warnx("resync: reading %llu+%llu: %s; pass stopped",
		    (unsigned long long)r->pr_op.off,
		    (unsigned long long)r->pr_op.len,
		    strerror(-r->pr_local_status));
		if (r->pr_local_status == -EIO)
			io_disk_failed(p, r);
	}
	if (current) {
		sy->sy_outstanding--;
		chunk_track(sy, r, 0);
		sy->sy_done += r->pr_op.len;
		if (!failed && r->pr_kind == SY_COPY) {
			/* A remarked one is copied again by the next pass. */
			for (e = e0; e < e1 && !(r->pr_state & PR_REMARKED);
			    e++)
				cr_clear(&p->p_cr, e);
			sy->sy_pass_copied += e1 - e0;
			sy->sy_copied_extents += e1 - e0;
			sy->sy_copied_bytes += r->pr_op.len;
			sy->sy_run_extents += e1 - e0;
			if (r->pr_nonzero) {
				sy->sy_data_bytes += r->pr_op.len;
				sy->sy_run_data += r->pr_op.len;
			} else {
				/* Zeros went as a 48-byte frame: they do
				 * not count against resync_rate. */
				sy->sy_issued -= MIN(sy->sy_issued,
				    r->pr_op.len);
			}
		}
		if (failed)	/* the session is gone, or our disk failed */
			sy->sy_pass = PASS_NONE;
	}
	io_free(p, r);
	if (current && !failed)
		sync_pump(p);
}

/* Whether the rate limit lets len more bytes go now; if not, wakes the
 * pump when it will. */
static int
rate_allows(struct primary *p, uint64_t len)
{
	struct sync *sy = p->p_sync;
	uint64_t rate = p->p_cfg.resync_rate, elapsed, allowed, wait_ns;
	struct timeval tv;

	if (rate == 0)
		return 1;
	elapsed = now_ns() - sy->sy_start_ns;
	allowed = (uint64_t)((double)rate * (double)elapsed / 1e9) + SYNC_CHUNK;
	if (sy->sy_issued + len <= allowed)
		return 1;
	wait_ns = (uint64_t)((double)(sy->sy_issued + len - allowed) * 1e9 /
	    (double)rate) + 1000000;
	tv.tv_sec = (time_t)(wait_ns / 1000000000);
	tv.tv_usec = (suseconds_t)(wait_ns % 1000000000 / 1000);
	if (!evtimer_pending(sy->sy_rate_timer, NULL))
		evtimer_add(sy->sy_rate_timer, &tv);
	return 0;
}

/* The next chunk of the pass from the cursor: [*off, *off + *len). */
static int
next_chunk(struct primary *p, uint64_t *off, uint64_t *len)
{
	struct sync *sy = p->p_sync;
	struct cr *c = &p->p_cr;
	uint64_t ext = ext_bytes(p), per = MAX(SYNC_CHUNK / ext, 1);
	uint64_t e, n;

	if (sy->sy_pass == PASS_VERIFY) {
		e = sy->sy_cursor;
		n = MIN(per, sy->sy_stop - e);
	} else {
		e = cr_next(c, sy->sy_cursor);
		n = 0;
		while (e + n < sy->sy_stop && n < per && cr_test(c, e + n))
			n++;
	}
	if (e >= sy->sy_stop || n == 0)
		return 0;
	*off = e * ext;
	*len = MIN(n * ext, p->p_cfg.vol_size - *off);
	sy->sy_cursor = e + n;
	return 1;
}

static void
sync_pump(struct primary *p)
{
	struct sync *sy = p->p_sync;
	struct preq *r;
	uint64_t off, len;

	while (sy->sy_pass != PASS_NONE && sy->sy_outstanding < SYNC_DEPTH &&
	    repl_connected(p) && repl_window_open(p) && !p->p_stopping &&
	    rate_allows(p, MIN(SYNC_CHUNK, p->p_cfg.vol_size))) {
		uint64_t save = sy->sy_cursor;

		if (!next_chunk(p, &off, &len))
			break;
		if ((r = io_alloc(p, len)) == NULL) {
			sy->sy_cursor = save;	/* retried when a chunk completes */
			break;
		}
		r->pr_op.type = TG_OTHER;
		r->pr_op.off = off;
		r->pr_op.len = len;
		r->pr_kind = sy->sy_pass == PASS_COPY ? SY_COPY : SY_CSUM;
		r->pr_done = sync_chunk_done;
		r->pr_arg = (void *)(uintptr_t)sy->sy_gen;
		sy->sy_outstanding++;
		sy->sy_issued += len;
		chunk_track(sy, r, 1);
		io_submit(p, r);
	}
	if (sy->sy_pass != PASS_NONE && sy->sy_outstanding == 0 &&
	    (sy->sy_cursor >= sy->sy_stop ||
	    (sy->sy_pass != PASS_VERIFY && cr_next(&p->p_cr, sy->sy_cursor) >=
	    sy->sy_stop)))
		pass_end(p);
}

/* A resync begins (at connect, or by command): its own totals. */
static void
run_begin(struct sync *sy)
{
	sy->sy_run_start_ns = now_ns();
	sy->sy_run_extents = sy->sy_run_data = 0;
}

void
sync_start(struct primary *p, int full)
{
	struct sync *sy = p->p_sync;

	sy->sy_in_sync = 0;	/* until this session's resync is through */
	run_begin(sy);
	/* A mirror that shares no generation holds unrelated data: hashing
	 * it first would only cost a second read of everything. */
	pass_begin(p, p->p_cfg.resync_checksums && !full ? PASS_CSUM :
	    PASS_COPY, 0, p->p_cr.c_nbits);
}

int
sync_mirror_current(struct primary *p)
{
	return p->p_sync->sy_in_sync;
}

void
sync_kick(struct primary *p)
{
	if (p->p_sync->sy_pass != PASS_NONE)
		sync_pump(p);
}

/* ---- admin verbs -------------------------------------------------------- */

static int
parse_offset(const char *s, uint64_t *out)
{
	return config_parse_size(s, out);
}

/* Why a pass cannot start by command now, or NULL. */
static json_t *
pass_refused(struct primary *p, const char *verb)
{
	struct sync *sy = p->p_sync;

	if (!repl_connected(p))
		return ctl_error("not-connected", "%s: the mirror is not "
		    "connected", verb);
	if (sy->sy_pass != PASS_NONE)
		return ctl_error("busy", "%s: a %s pass is running", verb,
		    pass_names[sy->sy_pass]);
	return NULL;
}

json_t *
sync_verify(struct primary *p, const char *args)
{
	struct sync *sy = p->p_sync;
	uint64_t start = 0, stop = p->p_cfg.vol_size, ext = ext_bytes(p);
	char buf[256], *tok, *save = NULL;
	json_t *refused;

	snprintf(buf, sizeof(buf), "%s", args);
	for (tok = strtok_r(buf, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		/* --start OFFSET or --start=OFFSET */
		char *val = strchr(tok, '=');
		uint64_t *dst;

		if (val != NULL)
			*val++ = '\0';
		else
			val = strtok_r(NULL, " ", &save);
		dst = strcmp(tok, "--start") == 0 ? &start :
		    strcmp(tok, "--stop") == 0 ? &stop : NULL;

		if (dst == NULL)
			return ctl_error("bad-argument", "verify: unknown "
			    "argument \"%s\" (use --start OFFSET --stop OFFSET)",
			    tok);
		if (val == NULL || parse_offset(val, dst) != 0)
			return ctl_error("bad-argument", "verify: %s needs a "
			    "byte offset such as 1G", tok);
	}
	if (start >= stop || stop > p->p_cfg.vol_size)
		return ctl_error("bad-argument", "verify: need start < stop <= "
		    "volume size (%llu)", (unsigned long long)p->p_cfg.vol_size);
	if ((refused = pass_refused(p, "verify")) != NULL)
		return refused;
	sy->sy_v_start = start / ext * ext;
	sy->sy_v_stop = MIN((stop + ext - 1) / ext * ext, p->p_cfg.vol_size);
	sy->sy_v_mismatch = sy->sy_v_checked = 0;
	sy->sy_v_done = 0;
	pass_begin(p, PASS_VERIFY, start / ext, (stop + ext - 1) / ext);
	return json_pack("{s:b, s:I, s:I}", "ok", 1,
	    "start", (json_int_t)sy->sy_v_start,
	    "stop", (json_int_t)sy->sy_v_stop);
}

json_t *
sync_resync(struct primary *p)
{
	struct sync *sy = p->p_sync;
	json_t *refused;

	if ((refused = pass_refused(p, "resync")) != NULL)
		return refused;
	run_begin(sy);
	pass_begin(p, PASS_COPY, 0, p->p_cr.c_nbits);
	return json_pack("{s:b, s:I}", "ok", 1,
	    "extents", (json_int_t)p->p_cr.c_ndirty);
}

/* The passes' part of "status". */
void
sync_status(struct primary *p, json_t *o, json_t *counters)
{
	struct sync *sy = p->p_sync;
	int resync = sy->sy_pass == PASS_COPY || sy->sy_pass == PASS_CSUM;
	double secs = (double)(now_ns() - sy->sy_start_ns) / 1e9;
	double rate = secs > 0 ? (double)sy->sy_done / secs : 0;
	uint64_t left = sy->sy_total > sy->sy_done ? sy->sy_total - sy->sy_done : 0;

	json_object_set_new(o, "out_of_sync_bytes", json_integer((json_int_t)
	    MIN(p->p_cr.c_ndirty * ext_bytes(p), p->p_cfg.vol_size)));
	json_object_set_new(o, "out_of_sync_extents",
	    json_integer((json_int_t)p->p_cr.c_ndirty));
	json_object_set_new(o, "resync", json_pack("{s:b, s:s, s:f, s:I, s:o}",
	    "running", resync,
	    "pass", resync ? pass_names[sy->sy_pass] : "none",
	    "progress", resync && sy->sy_total ?
	    (double)sy->sy_done / (double)sy->sy_total : 1.0,
	    "rate_bytes_per_s", (json_int_t)(resync ? rate : 0),
	    "eta_s", resync && rate > 0 ?
	    json_integer((json_int_t)((double)left / rate)) : json_null()));
	json_object_set_new(o, "verify", json_pack("{s:b, s:b, s:f, s:I, s:I, "
	    "s:I, s:I}",
	    "running", sy->sy_pass == PASS_VERIFY,
	    "done", sy->sy_v_done,
	    "progress", sy->sy_pass == PASS_VERIFY && sy->sy_total ?
	    (double)sy->sy_done / (double)sy->sy_total : sy->sy_v_done ? 1.0 : 0,
	    "start", (json_int_t)sy->sy_v_start,
	    "stop", (json_int_t)sy->sy_v_stop,
	    "checked_extents", (json_int_t)sy->sy_v_checked,
	    "mismatched_extents", (json_int_t)sy->sy_v_mismatch));
	json_object_set_new(counters, "resync_extents",
	    json_integer((json_int_t)sy->sy_copied_extents));
	json_object_set_new(counters, "resync_bytes",
	    json_integer((json_int_t)sy->sy_copied_bytes));
	json_object_set_new(counters, "resync_data_bytes",
	    json_integer((json_int_t)sy->sy_data_bytes));
	json_object_set_new(counters, "resync_checksum_matches",
	    json_integer((json_int_t)sy->sy_csum_same));
}
