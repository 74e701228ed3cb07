/*
 * notify.c: see notify.h. libsystemd's sd_notify() speaks the protocol
 * (NOTIFY_SOCKET, abstract sockets, credentials) and is a no-op without
 * NOTIFY_SOCKET, so these are thin. The environment is kept (unset_env 0):
 * the daemons notify again later (reload, stop).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "common/notify.h"

void
notify_ready(void)
{
	(void)sd_notify(0, "READY=1");
}

void
notify_stopping(void)
{
	(void)sd_notify(0, "STOPPING=1");
}

void
notify_status(const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One line: a newline would start another assignment. */
	for (char *p = msg; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	(void)sd_notifyf(0, "STATUS=%s", msg);
}

void
notify_reloading(void)
{
	struct timespec ts;

	/*
	 * systemd 253's Type=notify-reload wants MONOTONIC_USEC with
	 * RELOADING=1; older ones ignore it. READY=1 ends the reload.
	 */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	(void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000);
}
