/*
 * duet-mirror: receives a primary's operation stream over TLS and applies
 * it to the mirror volume through range task groups. See duet-mirror(8).
 *
 * Exit codes (sysexits): 0 clean stop, 64 usage, 78 configuration,
 * 74 volume or metadata I/O, 71 listener or other OS failure.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "common/config.h"
#include "common/log.h"
#include "common/stream.h"
#include "common/ctl.h"
#include "common/daemon.h"
#include "common/cr.h"
#include "common/notify.h"
#include "common/reload.h"
#include "common/tls.h"
#include "common/util.h"
#include "mirror/mirror.h"

#define STOP_GRACE 3	/* seconds for goodbyes to leave once all is applied */

static void
stop_now(evutil_socket_t fd, short what, void *arg)
{
	struct mirror *m = arg;

	(void)fd; (void)what;
	event_base_loopexit(m->mr_base, NULL);
}

/*
 * During a stop: once every received op is applied and acked, give the
 * goodbyes a moment to leave, then end the loop.
 */
void
mirror_check_stopped(struct mirror *m)
{
	struct timeval tv = { STOP_GRACE, 0 };

	if (m->mr_inflight > 0)
		return;
	if (m->mr_nsessions == 0) {
		event_base_loopexit(m->mr_base, NULL);
	} else if (m->mr_stop_timer == NULL) {
		m->mr_stop_timer = evtimer_new(m->mr_base, stop_now, m);
		if (m->mr_stop_timer == NULL)
			event_base_loopexit(m->mr_base, NULL);
		else
			evtimer_add(m->mr_stop_timer, &tv);
	}
}

static void
reconfigured(void *arg)
{
	session_reconfigured(arg);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct mirror *m = arg;

	(void)what;
	if (sig == SIGHUP) {
		reload_config(m->mr_cfg.path, &m->mr_cfg, reconfigured, m);
		return;
	}
	if (m->mr_stopping)
		return;
	notify_stopping();
	log_info("%s: stopping: finishing %u ops in flight",
	    strsignal((int)sig), m->mr_inflight);
	m->mr_stopping = 1;
	if (m->mr_listener != NULL)
		evconnlistener_disable(m->mr_listener);
	session_shutdown_all(m, "mirror shutting down");
	mirror_check_stopped(m);
}

/*
 * The volume as this mirror keeps it. One that ran as a primary (the old
 * primary after a failover) keeps its generations and change record: the
 * new primary compares them at its hello and sends what differs.
 */
static int
take_role(struct mirror *m)
{
	struct cr *c = &m->mr_cr;

	m->mr_disk = (c->c_m.md_flags & META_F_INCONSISTENT) ?
	    "inconsistent" : "outdated";	/* until a primary says more */
	if ((m->mr_discard = (c->c_m.md_flags & META_F_DISCARD) != 0))
		log_warnx("resolve --discard-local is armed (from before the "
		    "restart): at the next split brain this mirror's own "
		    "changes are dropped");
	if (c->c_m.md_flags & META_F_DISK_FAILED) {
		/* Its data is stale where writes went to the mirror alone,
		 * and suspect where reads failed: all of it is copied. */
		log_warnx("this volume's disk failed while it was the "
		    "primary: every extent is marked for the primary to copy");
		cr_mark_all(c);
		c->c_m.md_flags &= ~META_F_DISK_FAILED;
		c->c_unsaved = 1;
		if (cr_save(c) != 0)
			return EX_IOERR;
	}
	if (c->c_m.md_role == ROLE_MIRROR)
		return 0;
	if (c->c_m.md_role == ROLE_PRIMARY)
		log_info("this volume was a primary; it is now a mirror and "
		    "keeps its %llu changed extents for the primary to "
		    "reconcile", (unsigned long long)c->c_ndirty);
	c->c_m.md_role = ROLE_MIRROR;
	c->c_m.md_flags &= ~META_F_PEER_HAS_GEN;
	return cr_commit(c) == 0 ? 0 : EX_IOERR;
}

int
main(int argc, char **argv)
{
	static struct mirror mirror;
	struct mirror *m = &mirror;
	struct event *sigs[3];
	static const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	char err[8192];
	int fg, i, rc;

	fg = daemon_setup(argc, argv, "duet-mirror", 1, &m->mr_cfg, NULL);
	m->mr_started = m->mr_since = time(NULL);

	if ((m->mr_ssl = tls_ctx_new(&m->mr_cfg, 1, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return EX_CONFIG;
	}
	if ((rc = volume_open(&m->mr_cfg, &m->mr_st, &m->mr_cr)) != 0 ||
	    (rc = take_role(m)) != 0)
		return rc;
	cr_set_durable(&m->mr_cr, &m->mr_st.st_durable_ns,
	    &m->mr_st.st_flush_errors, storage_flush_al, &m->mr_st);
	m->mr_max_queued = m->mr_cfg.max_inflight_bytes;

	if (!fg && daemon(0, 0) == -1) {
		log_warn("daemon");
		return EX_OSERR;
	}
	/* After daemon(): threads and the event base do not survive fork. */
	evthread_use_pthreads();
	if ((m->mr_base = event_base_new()) == NULL ||
	    (m->mr_cr_timer = cr_timer_new(&m->mr_cr, m->mr_base)) == NULL) {
		log_warnx("cannot create the event base");
		return EX_OSERR;
	}
	if (session_listen(m, err, sizeof(err)) != 0) {
		log_warnx("%s", err);
		return EX_OSERR;
	}
	if (ctl_listen(&m->mr_ctl, m->mr_base, m->mr_cfg.status_socket,
	    m->mr_cfg.status_group, status_handle, m, err, sizeof(err)) != 0) {
		log_warnx("status.socket: %s", err);
		return EX_OSERR;
	}
	if ((rc = apply_init(m)) != 0) {
		log_warnx("cannot start the task groups: %s", strerror(-rc));
		return EX_OSERR;
	}
	for (i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(m->mr_base, signums[i], on_signal, m);
		VERIFY(sigs[i] != NULL && evsignal_add(sigs[i], NULL) == 0);
	}
	log_info("listening on %s: volume %s (%llu bytes), %u groups x %u "
	    "tasks, range %llu", m->mr_cfg.listen, m->mr_cfg.vol_path,
	    (unsigned long long)m->mr_cfg.vol_size, m->mr_cfg.task_groups,
	    m->mr_cfg.tasks_per_group,
	    (unsigned long long)m->mr_cfg.range_size);

	notify_ready();
	stream_loop(m->mr_base, m->mr_cfg.poll_us);

	/* Stopped: everything received is applied; make it durable. */
	apply_fini(m);
	rc = volume_flush_final(&m->mr_st, &m->mr_cr);
	session_free_all(m);
	if (cr_close(&m->mr_cr, rc == 0) != 0 && rc == 0)
		rc = -EIO;
	ctl_free(m->mr_ctl);
	event_free(m->mr_cr_timer);
	if (m->mr_sync_ev != NULL)
		event_free(m->mr_sync_ev);
	for (i = 0; i < 3; i++)
		event_free(sigs[i]);
	if (m->mr_stop_timer != NULL)
		event_free(m->mr_stop_timer);
	stream_linger_end_all();
	event_base_free(m->mr_base);
	SSL_CTX_free(m->mr_ssl);
	storage_close(&m->mr_st);
	log_info("stopped");
	return rc == 0 ? 0 : EX_IOERR;
}
