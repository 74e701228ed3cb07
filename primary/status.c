/* status.c: duet-primary's answer to the status socket (duetctl(8)). */
#include <string.h>

#include <jansson.h>

#include "common/ctl.h"
#include "common/status.h"
#include "primary/primary.h"

static json_t *
status_reply(struct primary *p)
{
	json_t *o = status_base(&p->p_cfg, "primary", p->p_started, p->p_tg);
	json_t *c = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
	    "reads", (json_int_t)p->p_reads,
	    "writes", (json_int_t)p->p_writes,
	    "flushes", (json_int_t)p->p_flushes,
	    "trims", (json_int_t)p->p_trims,
	    "zeroes", (json_int_t)p->p_zeroes,
	    "bytes_read", (json_int_t)p->p_bytes_read,
	    "bytes_written", (json_int_t)p->p_bytes_written,
	    "errors", (json_int_t)p->p_errors);

	/* The primary's own disk is the reference copy, until it fails. */
	json_object_set_new(o, "disk", json_string(p->p_disk_failed ?
	    "failed" : "up-to-date"));
	json_object_set_new(c, "remote_reads",
	    json_integer((json_int_t)p->p_remote_reads));
	status_generation(o, &p->p_cr);
	repl_status(p, o, c);
	sync_status(p, o, c);
	json_object_set_new(o, "counters", c);
	json_object_set_new(o, "clients", json_integer(nbd_clients(p)));
	return o;
}

json_t *
status_handle(void *arg, const char *verb, const char *args)
{
	struct primary *p = arg;

	if (strcmp(verb, "status") == 0) {
		if (args[0] != '\0')
			return ctl_error("bad-argument",
			    "status takes no argument");
		return status_reply(p);
	}
	if (strcmp(verb, "verify") == 0)
		return sync_verify(p, args);
	if (strcmp(verb, "resync") == 0) {
		if (args[0] != '\0')
			return ctl_error("bad-argument",
			    "resync takes no argument");
		return sync_resync(p);
	}
	if (strcmp(verb, "resolve") == 0) {
		if (strcmp(args, "--discard-local") != 0)
			return ctl_error("bad-argument", "resolve: say "
			    "--discard-local on the side whose data is to be "
			    "dropped");
		return ctl_error("wrong-role", "resolve: this side is the "
		    "primary and serves its data; to drop it, stop "
		    "duet-primary here, start duet-mirror on the same "
		    "configuration, and run this command there");
	}
	return NULL;
}
