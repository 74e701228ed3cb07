/*
 * notify.h: telling systemd how the daemon is doing (Type=notify). Each
 * call is a no-op when NOTIFY_SOCKET is not set, so the daemons call them
 * unconditionally.
 */
#ifndef DUET_NOTIFY_H
#define DUET_NOTIFY_H

void notify_ready(void);			/* READY=1 */
void notify_stopping(void);			/* STOPPING=1 */
void notify_status(const char *fmt, ...)	/* STATUS=... */
    __attribute__((format(printf, 1, 2)));
void notify_reloading(void);			/* RELOADING=1 */
/* (after a reload, notify_ready() again says it is done) */

#endif
