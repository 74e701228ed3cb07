/*
 * log.c: see log.h. fatal() exits with EX_SOFTWARE (70): it is for "cannot
 * go on", start-up errors with their own sysexits code exit in main.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sysexits.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"

static int log_fg = 1;
static int log_journal;		/* stderr is the journal: prefix priorities */
static int log_verbose;
static char log_volume[64];

void
log_init(const char *ident, int foreground, int verbose)
{
	log_fg = foreground;
	log_verbose = verbose;
	/* Under systemd (-f, Type=notify) stderr goes to the journal, which
	 * reads a "<N>" prefix as the line's priority. */
	log_journal = getenv("JOURNAL_STREAM") != NULL;
	if (!foreground)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void
log_setvolume(const char *volume)
{
	snprintf(log_volume, sizeof(log_volume), "%s", volume ? volume : "");
}

void log_setverbose(int verbose) { log_verbose = verbose; }
int log_getverbose(void) { return log_verbose; }

static void
vlog(int pri, const char *fmt, va_list ap, const char *suffix)
{
	char msg[1024];
	int n;

	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	if (suffix != NULL && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - n, ": %s", suffix);
	if (log_fg) {
		static const char *lvl[] = {
			[LOG_ERR] = "error", [LOG_WARNING] = "warning",
			[LOG_INFO] = "info", [LOG_DEBUG] = "debug",
		};
		char pfx[8] = "";

		if (log_journal)
			snprintf(pfx, sizeof(pfx), "<%d>", pri);
		fprintf(stderr, "%s%s%s%s%s: %s\n", pfx,
		    log_volume[0] ? "[" : "", log_volume,
		    log_volume[0] ? "] " : "", lvl[pri] ? lvl[pri] : "log", msg);
	} else if (log_volume[0]) {
		syslog(pri, "[%s] %s", log_volume, msg);
	} else {
		syslog(pri, "%s", msg);
	}
}

#define LOGFN(name, pri, cond, suffix)			\
void								\
name(const char *fmt, ...)					\
{								\
	int saved = errno;					\
	va_list ap;						\
	if (!(cond))						\
		return;						\
	va_start(ap, fmt);					\
	vlog(pri, fmt, ap, suffix);				\
	va_end(ap);						\
	errno = saved;						\
}

LOGFN(log_warn, LOG_WARNING, 1, strerror(saved))
LOGFN(log_warnx, LOG_WARNING, 1, NULL)
LOGFN(log_info, LOG_INFO, 1, NULL)
LOGFN(log_debug, LOG_DEBUG, log_verbose > 0, NULL)

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERR, fmt, ap, strerror(saved));
	va_end(ap);
	exit(EX_SOFTWARE);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_ERR, fmt, ap, NULL);
	va_end(ap);
	exit(EX_SOFTWARE);
}

void
verify_failed(const char *expr, const char *file, int line)
{
	/* abort, not exit: leave a core for an invariant that broke. */
	log_warnx("invariant failed: %s at %s:%d", expr, file, line);
	abort();
}

uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int
log_every(struct log_every *le, uint64_t *skipped)
{
	uint64_t now = now_ns();
	uint64_t last = __atomic_load_n(&le->le_last_ns, __ATOMIC_RELAXED);

	if ((last != 0 && now - last < 1000000000ull) ||
	    !__atomic_compare_exchange_n(&le->le_last_ns, &last, now, 0,
	    __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		__atomic_add_fetch(&le->le_skipped, 1, __ATOMIC_RELAXED);
		return 0;
	}
	*skipped = __atomic_exchange_n(&le->le_skipped, 0, __ATOMIC_RELAXED);
	return 1;
}

int
buf_is_zero(const void *buf, size_t len)
{
	const uint8_t *b = buf;

	/* Each byte zero and equal to its successor: one memcmp. */
	return len == 0 || (b[0] == 0 && memcmp(b, b + 1, len - 1) == 0);
}
