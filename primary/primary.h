/*
 * primary.h: duet-primary's state, shared by its stage files.
 *
 *   main.c   start-up, signals, stop
 *   nbd.c    the NBD front end: listening sockets, handshakes, requests in,
 *            replies out (proto/nbd.h does the encoding)
 *   io.c     a request's life: sequence number and frontier, the local
 *            engine, the mirror, and the countdown that answers the client
 *   repl.c   the TLS link to duet-mirror: connect with backoff, hello,
 *            frames out in sequence order, acks in, the in-flight window
 *   sync.c   the resync of what the change records say differs, and the
 *            checksum and verify passes
 *
 * Threads: one event thread owns the event base, every stream and
 * every field here not marked otherwise. The engine's workers run storage
 * calls and hand finished requests back through the completion queue
 * (p_cq), as in duet-mirror. While the storage is fast, the event thread
 * runs the storage call itself (mirror.inline_us): for a replicated write,
 * later in the same turn, after the turn has sent the write's frame, so
 * the two copies are written at once; the request still comes back
 * through p_cq, on a later turn.
 *
 * A request (struct preq) sits on at most one list at a time besides the
 * ordered lists of io.c, and is answered and freed exactly once, by io.c,
 * through nbd_reply() (client requests) or its pr_done hook (sync reads).
 */
#ifndef DUET_PRIMARY_H
#define DUET_PRIMARY_H

#include <pthread.h>
#include <stdint.h>

#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "common/config.h"
#include "common/cq.h"
#include "common/cr.h"
#include "common/pool.h"
#include "common/storage.h"
#include "common/tg.h"
#include "proto/nbd.h"
#include "proto/wire.h"

#define PRIMARY_ALIGN		512u		/* NBD minimum block = wire alignment */
#define PRIMARY_MAX_BLOCK	(4u << 20)	/* NBD maximum block = wire payload */
#define PRIMARY_PREF_BLOCK	4096u

struct primary;
struct nbd_conn;
struct ctl;

/* Where a request is on its way to the client's answer. */
#define PR_LOCAL_DONE	0x01	/* the local engine finished it */
#define PR_REMOTE_DONE	0x02	/* the mirror said what the mode needs */
#define PR_SENT		0x04	/* its frame is queued to the mirror */
#define PR_REPLICATE	0x08	/* it goes to the mirror at all */
#define PR_LOST		0x10	/* the mirror went away before it was done */
#define PR_REMARKED	0x20	/* a resync chunk whose span was marked
				 * changed while it was out (sync.c) */

/* A write's hold on the activity log (pr_cr): two references, one for
 * the local side and one for the mirror, each dropped when that side is
 * done (or, for the mirror, when its loss is recorded in the bitmap). */
#define PR_CR_NONE	0	/* not a write */
#define PR_CR_TRACKED	1	/* holds AL references */
#define PR_CR_MARKED	2	/* the AL was full: recorded as changed */

struct preq {
	struct tg_op	 pr_op;		/* first: the engine hands it back */
	struct primary	*pr_p;
	struct nbd_conn	*pr_conn;	/* NULL for internal requests */
	uint64_t	 pr_handle;	/* the client's cookie */
	uint16_t	 pr_cmd;	/* NBD_CMD_* */
	uint16_t	 pr_flags;	/* NBD_CMD_FLAG_* */
	unsigned	 pr_state;	/* PR_* */
	int		 pr_status;	/* 0 or a positive errno for the client */
	int		 pr_local_status;	/* set by a worker */
	uint64_t	 pr_local_ns;	/* now_ns() once PR_LOCAL_DONE */
	uint64_t	 pr_frontier;	/* sent to the mirror with it */
	int		 pr_nonzero;	/* sync read: data not all zero (atomic) */
	uint8_t		 pr_cr;		/* PR_CR_*: its hold on the AL */
	uint8_t		 pr_kind;	/* internal requests: SY_* (sync.c) */
	uint64_t	 pr_size;	/* bytes io_alloc took, for io_free */
	uint64_t	 pr_wcost;	/* counted in p_wbytes (nbd.c) */

	/* io.c's incomplete list (frontier), repl.c's send queue, and the
	 * completion queue; repl.c's ack ring keeps a pointer while the
	 * client waits for the mirror. */
	struct preq	*pr_inc_prev, *pr_inc_next;
	struct preq	*pr_send_next;
	struct cq_node	 pr_cq;

	/* Internal requests (sync.c): called instead of nbd_reply. */
	void		(*pr_done)(struct preq *r);
	void		*pr_arg;

	uint8_t		 pr_data[];	/* WRITE payload or READ result */
};

/* ---- nbd.c (the NBD front end) ----------------------------------------- */

/* Opens primary.nbd_socket (and nbd_listen if set). 0 or -1 with err. */
int  nbd_listen(struct primary *p, char *err, size_t errlen);
/*
 * Answers r to its client (data from r->pr_data for a successful READ,
 * r->pr_status as the NBD error) and frees r. If the client is gone, only
 * frees r. Event thread.
 */
void nbd_reply(struct preq *r);
/* Stop / resume reading requests from every client (memory, window). */
void nbd_pause(struct primary *p);
void nbd_resume(struct primary *p);
/* Stop accepting; close every client once its answers are out. */
void nbd_shutdown(struct primary *p);
void nbd_free_all(struct primary *p);
unsigned nbd_clients(struct primary *p);

/* ---- io.c ---------------------------------------------------------------- */

int  io_init(struct primary *p);
void io_fini(struct primary *p);
/*
 * Takes a checked request (nbd.c has validated it with nbd_check_request
 * and read any payload into pr_data) and sees it through. Event thread.
 */
void io_submit(struct primary *p, struct preq *r);
/* The frontier if a request were numbered now. */
uint64_t io_frontier_now(struct primary *p);
/* Allocates a request with room for len data bytes; NULL on no memory. */
struct preq *io_alloc(struct primary *p, uint64_t len);
void io_free(struct primary *p, struct preq *r);

/* A local read of r failed: the disk is failed from now on (recorded in
 * the metadata: duet-primary will not serve it again). */
void io_disk_failed(struct primary *p, const struct preq *r);
/* Drops one of a write's AL references; mark: the mirror lacks it. */
void io_cr_release(struct primary *p, struct preq *r, int mark);
/* repl.c calls these on the event thread; either may answer and free r. */
void io_remote_done(struct primary *p, struct preq *r);
void io_sent(struct primary *p, struct preq *r);

/* ---- repl.c --------------------------------------------------------------- */

int  repl_init(struct primary *p, char *err, size_t errlen);
void repl_fini(struct primary *p);
/* Whether the mirror session is up (past hello) and not degraded. */
int  repl_connected(struct primary *p);
/* Whether a session is up or being set up (hello, change record). */
int  repl_session(struct primary *p);
/* Whether the in-flight window has room (ops and bytes). */
int  repl_window_open(struct primary *p);
/*
 * Queues r's frame to the mirror, in sequence order. A sync read waits in
 * the queue (and so does everything after it) until its data is read:
 * repl_ready() sends what has become ready.
 */
void repl_send(struct primary *p, struct preq *r);
void repl_ready(struct primary *p);
/* Says goodbye and closes; stops reconnecting. */
void repl_shutdown(struct primary *p);
/* Frames queued or unacknowledged. */
unsigned repl_pending(struct primary *p);
void repl_status(struct primary *p, json_t *o, json_t *counters);
void repl_in_sync(struct primary *p);
/* The disk failed: requests whose frame is out wait for the mirror's
 * APPLIED ack, whatever the mode asked (ack_needed asks it of the rest). */
void repl_disk_failed(struct primary *p);
/* The link's timers changed (SIGHUP): apply them to the running link. */
void repl_reconfigured(struct primary *p);

/* ---- sync.c ----------------------------------------------------------------- */

int  sync_init(struct primary *p);
void sync_fini(struct primary *p);
/* Internal requests' kinds (pr_kind). */
#define SY_COPY		0	/* read here, write there */
#define SY_CSUM		1	/* read here, compare checksums with there */
#define SY_RREAD	2	/* read there, for a failed disk (io.c) */

/* A mirror session is up; full: the mirror shares no generation. */
void sync_start(struct primary *p, int full);
void sync_kick(struct primary *p);	/* the window has room again */
/* Worker thread: reads one piece of a sync request, holes as zeros. */
int  sync_read_piece(struct primary *p, struct preq *r, uint64_t off,
    uint64_t len, void *buf);
void sync_status(struct primary *p, json_t *o, json_t *counters);
/* Whether the mirror holds all our data (its resync is through). */
int  sync_mirror_current(struct primary *p);
/* A CSUM_REPLY for r: compares, clears or marks. -1: wrong size. */
int  sync_csum_reply(struct primary *p, struct preq *r, const uint8_t *theirs,
    uint32_t len);
/* Admin verbs: verify [--start OFFSET] [--stop OFFSET]; resync. */
json_t *sync_verify(struct primary *p, const char *args);
json_t *sync_resync(struct primary *p);

/* ---- status.c ---------------------------------------------------------- */

/* The status socket's handler: answers "status". */
json_t *status_handle(void *arg, const char *verb, const char *args);

/* ---- the daemon ------------------------------------------------------------- */

struct primary {
	struct config	 p_cfg;
	struct event_base *p_base;
	struct storage	 p_st;
	struct cr	 p_cr;		/* change record, generations, role */
	struct event	*p_cr_timer;	/* saves cleared bits now and then */
	struct tg	*p_tg;
	int		 p_stopping;
	int		 p_disk_failed;	/* a local read failed: the mirror
					 * serves reads (atomic: workers) */

	/* nbd.c */
	struct evconnlistener *p_nbd_unix;
	struct evconnlistener *p_nbd_tcp;
	struct nbd_conn	*p_conns;
	unsigned	 p_nconns;
	unsigned	 p_nlive;	/* of those, with their socket open */
	int		 p_paused;
	uint64_t	 p_wbytes;	/* clients' WRITE data, and TRIMs' and
					 * WRITE_ZEROES' engine pieces, io.c
					 * holds */
	int		 p_wfull;	/* p_wbytes over max_inflight_bytes:
					 * no request is read (nbd.c) */

	/* io.c */
	uint64_t	 p_seq;		/* last sequence number given */
	struct preq	*p_inc_head;	/* not yet answered, seq order */
	struct preq	*p_inc_tail;
	struct cq	 p_cq;		/* finished locally, for io_drain */
	struct event	*p_claimed_ev;	/* applies an op tg_submit_claim held
					 * back for its frame to leave first */
	unsigned	 p_nreq;	/* requests alive */
	struct pool	 p_pool;	/* io_alloc's free list */

	/* repl.c */
	struct repl	*p_repl;

	/* sync.c */
	struct sync	*p_sync;

	SSL_CTX		*p_ssl;
	struct ctl	*p_ctl;
	time_t		 p_started;

	/* counters */
	uint64_t	 p_reads, p_writes, p_flushes, p_trims, p_zeroes;
	uint64_t	 p_bytes_read, p_bytes_written, p_errors;
	uint64_t	 p_remote_reads;	/* reads served by the mirror */
};

/* main.c */
void primary_check_stopped(struct primary *p);

#endif
