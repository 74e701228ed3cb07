/*
 * status.h: the parts of the "status" reply both daemons share (the
 * schema is documented in duetctl(8); fields may be added, none renamed).
 */
#ifndef DUET_STATUS_H
#define DUET_STATUS_H

#include <time.h>

#include <jansson.h>

#define DUET_VERSION "0.1.0"

struct config;
struct cr;
struct tg;

/*
 * A new object with volume, role, mode, groups (queue depths of tg),
 * uptime_s and version. The caller adds connection, disk, resync,
 * inflight, counters, out_of_sync_bytes and last_error.
 */
json_t *status_base(const struct config *cfg, const char *role,
    time_t started, struct tg *tg);

/* {"state": state, "peer": peer or null, "since": since} */
json_t *status_connection(const char *state, const char *peer, time_t since);

/* Adds "uuid", "generation" {"current", "history"} (hex strings) and
 * "activity_log" {"hot", "capacity"} from the change record. */
void status_generation(json_t *o, const struct cr *c);

/* A string, or null for NULL or "". */
json_t *status_str_or_null(const char *s);

#endif
