/* status.c: duet-mirror's answer to the status socket (duetctl(8)). */
#include <string.h>

#include <jansson.h>

#include "common/ctl.h"
#include "common/log.h"
#include "common/status.h"
#include "mirror/mirror.h"

static json_t *
status_reply(struct mirror *m)
{
	json_t *o = status_base(&m->mr_cfg, "mirror", m->mr_started, m->mr_tg);
	const char *peer = session_active_peer(m);

	json_object_set_new(o, "connection", status_connection(
	    peer != NULL ? "connected" : m->mr_split ? "split-brain" :
	    "listening", peer, m->mr_since));
	json_object_set_new(o, "disk", json_string(m->mr_disk));
	status_generation(o, &m->mr_cr);
	json_object_set_new(o, "discard_local", json_boolean(m->mr_discard));
	/* What this side applied that the primary may lack (sent to it at
	 * the next hello). */
	json_object_set_new(o, "changed_extents",
	    json_integer((json_int_t)m->mr_cr.c_ndirty));
	/* The primary keeps the account of what differs; the mirror only
	 * knows whether it has heard "in sync". */
	json_object_set_new(o, "out_of_sync_bytes", strcmp(m->mr_disk,
	    "up-to-date") == 0 ? json_integer(0) : json_null());
	json_object_set_new(o, "resync", json_pack("{s:b, s:n, s:n, s:n}",
	    "running", peer != NULL && strcmp(m->mr_disk, "inconsistent") == 0,
	    "progress", "rate_bytes_per_s", "eta_s"));
	json_object_set_new(o, "inflight", json_pack("{s:i, s:I}",
	    "ops", (int)m->mr_inflight,
	    "bytes", (json_int_t)m->mr_queued_bytes));
	json_object_set_new(o, "counters", json_pack(
	    "{s:i, s:I, s:i, s:i, s:i, s:i, s:I, s:I, s:I}",
	    "reads", 0, "writes", (json_int_t)m->mr_ops, "flushes", 0,
	    "trims", 0, "zeroes", 0, "bytes_read", 0,
	    "bytes_written", (json_int_t)m->mr_bytes,
	    "errors", (json_int_t)m->mr_errors,
	    "reconnects", (json_int_t)(m->mr_nprimary > 0 ?
	    m->mr_nprimary - 1 : 0)));
	json_object_set_new(o, "last_error", json_null());
	return o;
}

json_t *
status_handle(void *arg, const char *verb, const char *args)
{
	struct mirror *m = arg;
	struct cr *c = &m->mr_cr;

	if (strcmp(verb, "status") == 0) {
		if (args[0] != '\0')
			return ctl_error("bad-argument",
			    "status takes no argument");
		return status_reply(m);
	}
	if (strcmp(verb, "resolve") == 0) {
		if (strcmp(args, "--discard-local") != 0)
			return ctl_error("bad-argument", "resolve: say "
			    "--discard-local on the side whose data is to be "
			    "dropped");
		/* On disk first: the choice outlives a restart, and a
		 * choice that cannot be kept is not reported as made. */
		c->c_m.md_flags |= META_F_DISCARD;
		if (cr_commit(c) != 0) {
			c->c_m.md_flags &= ~META_F_DISCARD;
			return ctl_error("io-error", "resolve: cannot write "
			    "volume.metadata %s; nothing is armed", c->c_path);
		}
		m->mr_discard = 1;
		log_warnx("resolve --discard-local: at the next split brain "
		    "this mirror's own changes are dropped and the primary's "
		    "data copied over them");
		return json_pack("{s:b, s:b, s:s}", "ok", 1, "split_brain",
		    m->mr_split, "message", m->mr_split ? "this side's data "
		    "will be discarded when the primary reconnects" :
		    "armed: no split brain now; if the next primary session "
		    "finds one, this side's data yields (until a session "
		    "starts; restarts keep it)");
	}
	if (strcmp(verb, "verify") == 0 || strcmp(verb, "resync") == 0)
		return ctl_error("wrong-role", "%s: run it on the primary, "
		    "which drives it", verb);
	return NULL;
}
