/*
 * Logging in the OpenBSD shape. Every line names the volume; a message
 * about a peer names its address itself ("peer 127.0.0.1:4711: ...").
 * Foreground: stderr. Otherwise: syslog (the journal under systemd).
 * Thread-safe: each line is formatted whole, then written once.
 */
#ifndef DUET_LOG_H
#define DUET_LOG_H

#include <stdarg.h>
#include <stdint.h>

#define LOG_FMT(a, b) __attribute__((format(printf, a, b)))

/* ident: program name; volume may be NULL until the config is read. */
void log_init(const char *ident, int foreground, int verbose);
void log_setvolume(const char *volume);
void log_setverbose(int verbose);
int  log_getverbose(void);

void log_warn(const char *fmt, ...) LOG_FMT(1, 2);   /* appends strerror(errno) */
void log_warnx(const char *fmt, ...) LOG_FMT(1, 2);
void log_info(const char *fmt, ...) LOG_FMT(1, 2);
void log_debug(const char *fmt, ...) LOG_FMT(1, 2);  /* only with -v */
void fatal(const char *fmt, ...) LOG_FMT(1, 2) __attribute__((noreturn));

/*
 * A burst of the same failure (a full disk fails every write) is logged
 * once a second: log_every() says whether to log now (any thread), and
 * how many were skipped since the last line.
 */
struct log_every {
	uint64_t	le_last_ns;
	uint64_t	le_skipped;
};
int  log_every(struct log_every *le, uint64_t *skipped);
void fatalx(const char *fmt, ...) LOG_FMT(1, 2) __attribute__((noreturn));

#endif
