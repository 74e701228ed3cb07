/*
 * daemon.h: what both daemons do before their own work starts: options,
 * configuration, -t, logging, then the volume and its identity.
 */
#ifndef DUET_DAEMON_H
#define DUET_DAEMON_H

#include <stddef.h>

struct config;
struct cr;
struct storage;

/*
 * Parses "-c FILE [-f] [-t] [-v]" (usage: exit 64), loads FILE into cfg
 * and runs check, if any, for the daemon's own required keys (either
 * failing: the message on stderr, exit 78), answers -t (the TLS files
 * loaded as the daemon will, tls_server saying which side: "configuration
 * OK", exit 0, or the error, exit 78), starts logging and ignores
 * SIGPIPE. Returns the -f flag.
 */
int daemon_setup(int argc, char **argv, const char *prog, int tls_server,
    struct config *cfg,
    int (*check)(const struct config *cfg, char *err, size_t errlen));

/*
 * Opens the volume (volume.path) and its metadata (volume.metadata, made
 * when missing), which must agree with cfg, and sets the role it runs in.
 * Returns 0, or logs why and returns the sysexits code to exit with.
 */
int volume_open(const struct config *cfg, struct storage *st, struct cr *c);
/*
 * At a stop: waits for a background flush, flushes the volume (0 or
 * -errno, logged) and takes in every flush that failed since the activity
 * log last looked (cr_check_flushes): a clean stop must not hide one.
 */
int volume_flush_final(struct storage *st, struct cr *c);

#endif
