/*
 * mirror.h: duet-mirror's state, shared by its stage files.
 *
 *   main.c     start-up, signals, shutdown
 *   session.c  the TLS listener and one connection each: framing, hello,
 *              turning frames into engine operations, acks
 *   apply.c    the engine backend (storage calls on worker threads, or on
 *              the event thread while the storage is fast) and the
 *              completion queue that brings finished ops back to the event
 *              thread
 *
 * Threads: one event thread owns the event base, every bufferevent and
 * every field here not marked otherwise. The engine's workers touch only
 * their op, the storage, and the completion queue (mr_cq).
 *
 * Sequence numbers: the engine runs on the mirror's own local sequence
 * (mr_lseq), so that sessions after a reconnect, whose primary may number
 * from 1 again, still order after everything received before. Each
 * session maps the primary's frontier onto local numbers (session.c).
 */
#ifndef DUET_MIRROR_H
#define DUET_MIRROR_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "common/config.h"
#include "common/cq.h"
#include "common/cr.h"
#include "common/pool.h"
#include "common/storage.h"
#include "common/tg.h"
#include "proto/wire.h"

#define MIRROR_MAX_PAYLOAD	(4u << 20)	/* largest frame payload */
#define MIRROR_ALIGN		512u
#define MIRROR_OUT_MAX		(1u << 20)	/* pause reading above this */
#define MIRROR_FMAP_MAX		(1u << 20)	/* frontier map entries */

struct session;
struct ctl;

/* One operation received from the primary, from frame to ack. Allocated
 * by session.c, freed by apply.c once acked; mo_op.arg is the mirror. */
struct mop {
	struct tg_op	 mo_op;		/* first: the engine hands it back */
	struct session	*mo_s;
	uint64_t	 mo_pseq;	/* the primary's sequence number */
	uint64_t	 mo_bytes;	/* what apply_alloc took */
	uint64_t	 mo_cost;	/* counted in mr_queued_bytes: mo_bytes
					 * and the engine's pieces */
	int		 mo_status;	/* 0 or a positive errno, for the ack */
	uint16_t	 mo_reply;	/* WIRE_ACK, WIRE_CSUM_REPLY, WIRE_READ_DATA */
	uint8_t		 mo_cr;		/* a write's AL hold: CR_HOLD_* */
	struct cq_node	 mo_cq;
	uint8_t		 mo_data[];	/* WRITE payload */
};

struct mirror {
	struct config	 mr_cfg;
	struct event_base *mr_base;
	SSL_CTX		*mr_ssl;
	struct evconnlistener *mr_listener;
	struct storage	 mr_st;
	struct cr	 mr_cr;		/* change record, generations, role */
	struct event	*mr_cr_timer;
	int		 mr_discard;	/* resolve --discard-local: the next
					 * split brain makes this side yield */
	int		 mr_split;	/* the last primary met diverged */
	struct tg	*mr_tg;

	uint64_t	 mr_lseq;	/* last local sequence number */
	struct session	*mr_active;	/* the one session past hello */
	struct session	*mr_sessions;	/* every open connection */
	unsigned	 mr_nsessions;
	uint64_t	 mr_queued_bytes;	/* received, not yet applied */
	uint64_t	 mr_max_queued;	/* stop reading above this */
	unsigned	 mr_inflight;	/* mops submitted, not acked */
	int		 mr_stopping;
	struct event	*mr_stop_timer;

	/* Completion queue: workers append, the event thread drains. */
	struct cq	 mr_cq;
	struct pool	 mr_pool;	/* struct mop free list (apply.c) */

	/* What the mirror's disk holds (status "disk"). */
	const char	*mr_disk;	/* "outdated", "inconsistent", "up-to-date" */
	/* IN_SYNC waits for a flush that begins after it (session.c). */
	struct session	*mr_sync_s;	/* the session that said it, or NULL */
	uint64_t	 mr_sync_at;	/* when (now_ns) */
	uint64_t	 mr_errors_told;	/* flush errors a session ended for */
	struct event	*mr_sync_ev;	/* looks again */
	time_t		 mr_since;	/* last session start or end */
	time_t		 mr_started;
	struct ctl	*mr_ctl;
	uint64_t	 mr_nprimary;	/* primary sessions so far */

	/* Counters, event thread. */
	uint64_t	 mr_ops;
	uint64_t	 mr_bytes;
	uint64_t	 mr_errors;
};

/* A write's hold on the AL (mo_cr, fmap): one reference for applying it
 * here, one until the primary's frontier says it is done there. */
#define CR_HOLD_NONE	0
#define CR_HOLD_TRACKED	1
#define CR_HOLD_MARKED	2	/* the AL was full: recorded instead */

/* apply.c */
int  apply_init(struct mirror *m);
void apply_fini(struct mirror *m);
/* A struct mop with dlen bytes of data (mo_bytes set), and back. */
struct mop *apply_alloc(struct mirror *m, uint64_t dlen);
void apply_free(struct mirror *m, struct mop *mo);
void apply_done(struct tg_op *op, int status);	/* engine thread */

/* session.c */
int  session_listen(struct mirror *m, char *err, size_t errlen);
void session_ack(struct session *s, uint64_t pseq, unsigned kind, int status);
void session_reply(struct session *s, struct mop *mo);
void session_op_finished(struct session *s);	/* one mop of s is gone */
void session_resume_all(struct mirror *m);
/* Takes in failed flushes (cr_check_flushes); after a new one, ends the
 * primary's session, whose next hello brings it the marks: 1 (the
 * session may be freed), else 0. */
int  session_check_flushes(struct mirror *m);
void session_shutdown_all(struct mirror *m, const char *reason);
void session_free_all(struct mirror *m);
/* mirror.idle_timeout changed (SIGHUP): apply it to the active session. */
void session_reconfigured(struct mirror *m);

/* status.c */
json_t *status_handle(void *arg, const char *verb, const char *args);
/* session.c: the active session's peer, or NULL */
const char *session_active_peer(struct mirror *m);

/* main.c */
void mirror_check_stopped(struct mirror *m);

#endif
