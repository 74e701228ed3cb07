/*
 * apply.c: what the engine's workers do with a mirror operation, and how
 * finished operations come back to the event thread.
 *
 * Workers (and the event thread, for ops the engine applies inline: tg.h)
 * run storage calls only. Each finished mop goes on the completion
 * queue (common/cq.h); the event thread then sends every ack and frees
 * every mop in one pass.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/apply.h"
#include "common/log.h"
#include "common/util.h"
#include "mirror/mirror.h"

static int
apply_piece(void *ctx, struct tg_op *op, uint64_t off, uint64_t len,
    void *buf)
{
	struct mirror *m = ctx;

	return apply_storage(&m->mr_st, op, off, len, buf);
}

static int
apply_flush(void *ctx)
{
	struct mirror *m = ctx;
	int rc = storage_flush(&m->mr_st);

	if (rc != 0)
		log_warnx("storage: flush: %s", strerror(-rc));
	return rc;
}

/*
 * Ops of up to APPLY_POOL_PAYLOAD bytes of data are kept for reuse, as
 * many as the primary's default in-flight window (primary.max_inflight),
 * which bounds what it sends before an ack.
 */
#define APPLY_POOL_PAYLOAD	4096
#define APPLY_POOL_OPS		1024

struct mop *
apply_alloc(struct mirror *m, uint64_t dlen)
{
	struct mop *mo = pool_get(&m->mr_pool, sizeof(*mo) + dlen);

	if (mo != NULL)
		mo->mo_bytes = sizeof(*mo) + dlen;
	return mo;
}

void
apply_free(struct mirror *m, struct mop *mo)
{
	pool_put(&m->mr_pool, mo, mo->mo_bytes);
}

/* Engine thread: queue the finished op for the event thread. */
void
apply_done(struct tg_op *op, int status)
{
	struct mop *mo = (struct mop *)op;
	struct mirror *m = op->arg;

	mo->mo_status = -status;
	cq_push(&m->mr_cq, &mo->mo_cq);
}

/* Event thread: ack and free everything that finished. */
static void
apply_drain(evutil_socket_t fd, short what, void *arg)
{
	struct mirror *m = arg;
	struct cq_node *n, *next;

	(void)fd; (void)what;
	for (n = cq_take(&m->mr_cq); n != NULL; n = next) {
		struct mop *mo = CONTAINER_OF(n, struct mop, mo_cq);

		next = n->cq_next;
		if (mo->mo_status != 0)
			m->mr_errors++;
		if (mo->mo_cr != CR_HOLD_NONE)
			cr_end(&m->mr_cr, mo->mo_op.off, mo->mo_op.len, 1,
			    mo->mo_cr == CR_HOLD_TRACKED);
		session_reply(mo->mo_s, mo);
		m->mr_queued_bytes -= mo->mo_cost;
		m->mr_inflight--;
		session_op_finished(mo->mo_s);
		apply_free(m, mo);
	}
	session_resume_all(m);
	/* A failed flush (a FLUSH, a FUA write, the background one) ends
	 * the session: the marks go to the primary with the next hello. */
	(void)session_check_flushes(m);
	if (m->mr_stopping)
		mirror_check_stopped(m);
}

int
apply_init(struct mirror *m)
{
	struct tg_params p = {
		.groups = m->mr_cfg.task_groups,
		.tasks = m->mr_cfg.tasks_per_group,
		.range_size = m->mr_cfg.range_size,
		.inline_ns = m->mr_cfg.inline_us * 1000u,
		/* A FLUSH that finds the engine idle is the frame the
		 * primary waits for: run it on the event thread. */
		.inline_flush = m->mr_cfg.inline_us > 0,
	};
	struct tg_backend be = { apply_piece, apply_flush, m };
	int rc;

	pool_init(&m->mr_pool, sizeof(struct mop) + APPLY_POOL_PAYLOAD,
	    APPLY_POOL_OPS);
	if ((rc = cq_init(&m->mr_cq, m->mr_base, apply_drain, m)) != 0)
		return rc;
	if ((rc = tg_create(&m->mr_tg, &p, &be)) != 0)
		return rc;
	return 0;
}

void
apply_fini(struct mirror *m)
{
	tg_destroy(m->mr_tg);
	m->mr_tg = NULL;
	cq_fini(&m->mr_cq);
	pool_fini(&m->mr_pool);
}
