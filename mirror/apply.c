/*
 * apply.c: what the engine's workers do with a mirror operation, and how
 * finished operations come back to the event thread.
 *
 * Workers run storage calls only. Each finished mop goes on the completion
 * queue; the first one onto an empty queue activates mr_cq_ev, so a burst
 * of completions costs one wake-up of the event thread, which then sends
 * every ack and frees every mop in one pass.
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

/* Engine thread: queue the finished op for the event thread. */
void
apply_done(struct tg_op *op, int status)
{
	struct mop *mo = (struct mop *)op;
	struct mirror *m = op->arg;
	int was_empty;

	mo->mo_status = -status;
	pthread_mutex_lock(&m->mr_cq_lock);
	mo->mo_cq_next = NULL;
	was_empty = m->mr_cq_head == NULL;
	if (was_empty)
		m->mr_cq_head = mo;
	else
		m->mr_cq_tail->mo_cq_next = mo;
	m->mr_cq_tail = mo;
	pthread_mutex_unlock(&m->mr_cq_lock);
	if (was_empty)
		event_active(m->mr_cq_ev, EV_READ, 0);
}

/* Event thread: ack and free everything that finished. */
static void
apply_drain(evutil_socket_t fd, short what, void *arg)
{
	struct mirror *m = arg;
	struct mop *mo, *next;

	(void)fd; (void)what;
	pthread_mutex_lock(&m->mr_cq_lock);
	mo = m->mr_cq_head;
	m->mr_cq_head = m->mr_cq_tail = NULL;
	pthread_mutex_unlock(&m->mr_cq_lock);

	for (; mo != NULL; mo = next) {
		next = mo->mo_cq_next;
		if (mo->mo_status != 0)
			m->mr_errors++;
		session_ack(mo->mo_s, mo->mo_pseq, WIRE_ACK_APPLIED,
		    mo->mo_status);
		m->mr_queued_bytes -= mo->mo_bytes;
		m->mr_inflight--;
		session_op_finished(mo->mo_s);
		free(mo);
	}
	session_resume_all(m);
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
	};
	struct tg_backend be = { apply_piece, apply_flush, m };
	int rc;

	pthread_mutex_init(&m->mr_cq_lock, NULL);
	m->mr_cq_ev = event_new(m->mr_base, -1, 0, apply_drain, m);
	if (m->mr_cq_ev == NULL)
		return -ENOMEM;
	if ((rc = tg_create(&m->mr_tg, &p, &be)) != 0)
		return rc;
	return 0;
}

void
apply_fini(struct mirror *m)
{
	tg_destroy(m->mr_tg);
	m->mr_tg = NULL;
	if (m->mr_cq_ev != NULL)
		event_free(m->mr_cq_ev);
	m->mr_cq_ev = NULL;
	pthread_mutex_destroy(&m->mr_cq_lock);
}
