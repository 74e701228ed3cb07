/*
 * duet-primary: serves a volume over NBD and replicates every write to
 * duet-mirror. See duet-primary(8).
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
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "common/config.h"
#include "common/log.h"
#include "common/stream.h"
#include "common/ctl.h"
#include "common/daemon.h"
#include "common/meta.h"
#include "common/notify.h"
#include "common/reload.h"
#include "common/tls.h"
#include "common/util.h"
#include "primary/primary.h"

#define STOP_GRACE_MS	500	/* for the goodbye to leave */

static struct event *stop_timer;

static void
stop_now(evutil_socket_t fd, short what, void *arg)
{
	struct primary *p = arg;
	unsigned pending = repl_pending(p);

	(void)fd; (void)what;
	if (p->p_stopping == 1)	/* not the goodbye's grace: the limit */
		log_warnx("stopping after primary.stop_timeout (%u s) with %u "
		    "clients, %u requests in flight and %u operations the "
		    "mirror has not acknowledged%s", p->p_cfg.stop_timeout,
		    nbd_clients(p), p->p_nreq, pending,
		    p->p_nreq > 0 || pending > 0 ? ": the metadata is left "
		    "not clean, and the next start resyncs the hot extents" :
		    "");
	event_base_loopexit(p->p_base, NULL);
}

/*
 * During a stop: once every client is gone and every request answered and
 * acknowledged, say goodbye to the mirror and leave.
 */
void
primary_check_stopped(struct primary *p)
{
	struct timeval tv = { 0, STOP_GRACE_MS * 1000 };

	if (!p->p_stopping || nbd_clients(p) > 0 || p->p_nreq > 0 ||
	    repl_pending(p) > 0 || p->p_stopping > 1)
		return;
	p->p_stopping = 2;
	repl_shutdown(p);
	event_del(stop_timer);
	evtimer_add(stop_timer, &tv);
}

static void
reconfigured(void *arg)
{
	repl_reconfigured(arg);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct primary *p = arg;
	struct timeval limit = { (time_t)p->p_cfg.stop_timeout, 0 };

	(void)what;
	if (sig == SIGHUP) {
		reload_config(p->p_cfg.path, &p->p_cfg, reconfigured, p);
		return;
	}
	if (p->p_stopping)
		return;
	notify_stopping();
	log_info("%s: stopping: %u clients, %u requests in flight",
	    strsignal((int)sig), nbd_clients(p), p->p_nreq);
	p->p_stopping = 1;
	nbd_shutdown(p);
	evtimer_add(stop_timer, &limit);
	primary_check_stopped(p);
}

/* duet-primary's own requirement of the configuration. */
static int
check_config(const struct config *cfg, char *err, size_t errlen)
{
	if (cfg->mirror_addr[0] != '\0')
		return 0;
	snprintf(err, errlen, "%s: primary.mirror: missing (required by "
	    "duet-primary)", cfg->path);
	return -1;
}

/* The activity log waits for a flush (common/cr.h). A failed disk is not
 * touched: its log fills, and then writes are marked changed instead. */
static int
al_flush(void *arg, int wait)
{
	struct primary *p = arg;

	if (__atomic_load_n(&p->p_disk_failed, __ATOMIC_RELAXED))
		return -1;
	return storage_flush_al(&p->p_st, wait);
}

/*
 * The volume as this primary serves it. A new one gets its identity and
 * first generation. One that ran as a mirror is promoted (failover): its
 * data starts a new generation, so the old primary, when it comes back as
 * a mirror, is told apart and receives what changed. An unfinished resync
 * leaves data that is no one's: it is not served.
 */
static int
take_role(struct primary *p)
{
	struct cr *c = &p->p_cr;
	char u[37];

	if (!meta_has_uuid(&c->c_m)) {
		if (RAND_bytes(c->c_m.md_uuid, META_UUID_LEN) != 1) {
			log_warnx("volume.metadata: no random bytes for a "
			    "volume UUID");
			return EX_OSERR;
		}
		meta_uuid_str(c->c_m.md_uuid, u);
		log_info("new volume identity %s", u);
	}
	if (c->c_m.md_role == ROLE_MIRROR &&
	    (c->c_m.md_flags & META_F_INCONSISTENT)) {
		log_warnx("volume.metadata: %s: this volume was a mirror in "
		    "the middle of a resync; its data is inconsistent and is "
		    "not served. Let the resync finish, or start over with a "
		    "new metadata file and a full sync from the other side",
		    c->c_path);
		return EX_DATAERR;
	}
	if (c->c_m.md_flags & META_F_DISK_FAILED) {
		log_warnx("volume.metadata: %s: this disk failed while "
		    "duet-primary served it (reads returned errors) and writes "
		    "went to the mirror alone: its data is stale and is not "
		    "served. Fail over: promote the mirror, and start "
		    "duet-mirror here on a good disk (it is copied whole)",
		    c->c_path);
		return EX_DATAERR;
	}
	if (c->c_m.md_gen == 0 || c->c_m.md_role != ROLE_PRIMARY) {
		if (c->c_m.md_role == ROLE_MIRROR)
			log_info("promoted: this volume was a mirror; it is "
			    "now the primary, with a new data generation");
		if (c->c_m.md_flags & META_F_DISCARD)
			log_warnx("the mirror's pending `duetctl resolve "
			    "--discard-local` is dropped: a primary keeps its "
			    "data");
		c->c_m.md_flags &= ~META_F_DISCARD;
		c->c_m.md_role = ROLE_PRIMARY;
		if (cr_new_gen(c) != 0)
			return EX_IOERR;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static struct primary primary;
	struct primary *p = &primary;
	struct event *sigs[3];
	static const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	char err[8192];
	int fg, i, rc;

	fg = daemon_setup(argc, argv, "duet-primary", 0, &p->p_cfg,
	    check_config);
	p->p_started = time(NULL);

	if ((p->p_ssl = tls_ctx_new(&p->p_cfg, 0, err, sizeof(err))) == NULL) {
		log_warnx("%s", err);
		return EX_CONFIG;
	}
	if ((rc = volume_open(&p->p_cfg, &p->p_st, &p->p_cr)) != 0 ||
	    (rc = take_role(p)) != 0)
		return rc;
	cr_set_durable(&p->p_cr, &p->p_st.st_durable_ns,
	    &p->p_st.st_flush_errors, al_flush, p);

	if (!fg && daemon(0, 0) == -1) {
		log_warn("daemon");
		return EX_OSERR;
	}
	/* After daemon(): threads and the event base do not survive fork. */
	evthread_use_pthreads();
	if ((p->p_base = event_base_new()) == NULL ||
	    (stop_timer = evtimer_new(p->p_base, stop_now, p)) == NULL ||
	    (p->p_cr_timer = cr_timer_new(&p->p_cr, p->p_base)) == NULL) {
		log_warnx("cannot create the event base");
		return EX_OSERR;
	}
	if ((rc = io_init(p)) != 0 || (rc = sync_init(p)) != 0) {
		log_warnx("cannot start the task groups: %s", strerror(-rc));
		return EX_OSERR;
	}
	if (nbd_listen(p, err, sizeof(err)) != 0) {
		log_warnx("%s", err);
		return EX_OSERR;
	}
	if (ctl_listen(&p->p_ctl, p->p_base, p->p_cfg.status_socket,
	    p->p_cfg.status_group, status_handle, p, err, sizeof(err)) != 0) {
		log_warnx("status.socket: %s", err);
		return EX_OSERR;
	}
	if (repl_init(p, err, sizeof(err)) != 0) {
		log_warnx("%s", err);
		return EX_CONFIG;
	}
	for (i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(p->p_base, signums[i], on_signal, p);
		VERIFY(sigs[i] != NULL && evsignal_add(sigs[i], NULL) == 0);
	}
	log_info("serving %s (%llu bytes) on %s%s%s, mode %s, mirror %s",
	    p->p_cfg.vol_name, (unsigned long long)p->p_cfg.vol_size,
	    p->p_cfg.nbd_socket, p->p_cfg.nbd_listen[0] ? " and " : "",
	    p->p_cfg.nbd_listen, config_mode_name(p->p_cfg.mode),
	    p->p_cfg.mirror_addr);

	notify_ready();
	stream_loop(p->p_base, p->p_cfg.poll_us);

	rc = volume_flush_final(&p->p_st, &p->p_cr);
	/* Clean only if nothing is in flight and the data is on disk. */
	if (cr_close(&p->p_cr, rc == 0 && p->p_nreq == 0 &&
	    repl_pending(p) == 0) != 0 && rc == 0)
		rc = -EIO;
	nbd_free_all(p);
	ctl_free(p->p_ctl);
	repl_fini(p);
	io_fini(p);
	sync_fini(p);
	for (i = 0; i < 3; i++)
		event_free(sigs[i]);
	event_free(stop_timer);
	event_free(p->p_cr_timer);
	stream_linger_end_all();
	event_base_free(p->p_base);
	SSL_CTX_free(p->p_ssl);
	storage_close(&p->p_st);
	log_info("stopped");
	return rc == 0 ? 0 : EX_IOERR;
}
