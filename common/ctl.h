/*
 * ctl.h: the status socket (DESIGN.md "Status socket"; relayd's control.c).
 *
 * A Unix stream socket, mode 0660, group status.group. One request per
 * line; one JSON object per reply line. Every reply has "ok": true|false;
 * an error also has "error": {"code": "...", "message": "..."} with a
 * stable code: unknown-command, bad-argument, not-permitted, busy,
 * line-too-long, internal, not-connected (needs the mirror), wrong-role
 * (the verb belongs to the other daemon).
 *
 * The server (ctl.c) owns the framing, the limits and the error replies;
 * the daemon supplies one handler that answers a verb. Event thread only.
 */
#ifndef DUET_CTL_H
#define DUET_CTL_H

#include <stddef.h>

#include <jansson.h>

struct event_base;
struct ctl;

#define CTL_LINE_MAX	4096		/* longer requests get line-too-long */
#define CTL_OUT_MAX	(256 * 1024)	/* a client that does not read is dropped */
#define CTL_CLIENTS_MAX	128		/* one more is told "busy" and closed */
#define CTL_WRITE_TIMEOUT 10		/* s without output progress: dropped */

/*
 * Answers one request. verb is the first word of the line, args the rest
 * (leading blanks skipped, possibly ""). Returns a new reference to the
 * reply object without "ok" (ctl.c adds "ok": true), or an object made by
 * ctl_error() (which has "ok": false already). NULL means unknown-command.
 */
typedef json_t *(*ctl_handler)(void *arg, const char *verb, const char *args);

/* Listens on path; 0 or -1 with err naming the path and the failing step. */
int ctl_listen(struct ctl **out, struct event_base *base, const char *path,
    const char *group, ctl_handler h, void *arg, char *err, size_t errlen);
/* Closes every client and the socket, unlinks the path. NULL is fine. */
void ctl_free(struct ctl *c);

/* {"ok": false, "error": {"code": code, "message": ...}} */
json_t *ctl_error(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
