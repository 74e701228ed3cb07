/*
 * config.h: one libconfig file per volume (DESIGN.md "Interfaces").
 * config_load() checks the whole schema: unknown keys, wrong types, bad
 * sizes and missing files are refused with "FILE:LINE: key: reason".
 */
#ifndef DUET_CONFIG_H
#define DUET_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum repl_mode { MODE_SYNC, MODE_MEMSYNC, MODE_ASYNC };

struct config {
	char     path[4096];		/* the file this came from */

	/* volume */
	char     vol_name[64];		/* [A-Za-z0-9._-]+ */
	char     vol_path[4096];
	uint64_t vol_size;		/* bytes, > 0, multiple of 4096 */
	char     vol_metadata[4096];
	uint32_t extent_size;		/* default 64K, power of two, 4K..64M */
	uint32_t al_extents;		/* activity log entries, default 1024 */

	/* primary (optional section; defaults when absent) */
	char     nbd_socket[108];	/* default /run/duet/NAME.nbd */
	char     nbd_group[64];		/* the NBD socket's group; "" = ours */
	char     nbd_listen[256];	/* "" = none; "host:port" */
	char     mirror_addr[256];	/* "host:port" */
	enum repl_mode mode;		/* default sync */
	uint32_t max_inflight;		/* default 1024 */
	uint64_t max_inflight_bytes;	/* default 64M */
	uint32_t max_clients;		/* NBD connections; default 64 */
	uint64_t resync_rate;		/* bytes per second, 0 = no limit */
	int      resync_checksums;	/* compare extents before copying */
	/* the link's timers, seconds */
	uint32_t ping_interval;		/* default 5, 1..3600 */
	uint32_t idle_timeout;		/* default 15, 2..86400, > ping */
	uint32_t connect_timeout;	/* default 10, 1..3600 */
	uint32_t congestion_timeout;	/* default 10, 1..86400 */
	uint32_t reconnect_max;		/* default 30, 1..3600 */
	uint32_t stop_timeout;		/* default 30, 1..3600 */

	/* mirror (optional section; defaults when absent) */
	char     listen[256];		/* default "0.0.0.0:7790" */
	uint32_t task_groups;		/* default 4, 1..256 */
	uint32_t tasks_per_group;	/* default 4, 1..256 */
	uint64_t range_size;		/* default 256M, power of two, >= 64K */
	uint32_t inline_us;		/* default 50, 0..1000000; 0 = never */
	uint32_t poll_us;		/* default 400, 0..1000; 0 = never poll */
	uint32_t session_timeout;	/* idle_timeout: s, default 30, 2..86400,
					 * > ping_interval */
	uint32_t hello_timeout;		/* s, default 10, 1..3600 */

	/* tls (required) */
	char     tls_ca[4096];
	char     tls_cert[4096];
	char     tls_key[4096];
	char     tls_peer_name[256];

	/* status (optional) */
	char     status_socket[108];	/* default /run/duet/NAME.status */
	char     status_group[64];	/* default "" = the daemon's group */
};

/*
 * Loads and checks path into *cfg. Returns 0, or -1 with a one-line message
 * "path:line: key: reason" (or "path: reason") in err[errlen].
 */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/*
 * Parses a size: a decimal integer with an optional K/M/G/T suffix (binary
 * multiples, case-insensitive). Returns 0 or -1 (bad syntax or overflow).
 */
int config_parse_size(const char *s, uint64_t *out);

const char *config_mode_name(enum repl_mode m);

/*
 * Calls cb with "section.key" for each key whose value differs; live says
 * whether the key may change under a running daemon (config_take_live).
 */
void config_diff(const struct config *a, const struct config *b,
    void (*cb)(void *arg, const char *key, int live), void *arg);

/*
 * Copies the keys that may change under a running daemon from next into
 * cur: primary.resync_rate, resync_checksums, the link's timers
 * (ping_interval, idle_timeout, connect_timeout, congestion_timeout,
 * reconnect_max) and stop_timeout, and mirror.idle_timeout and
 * hello_timeout. Returns how many differed.
 */
int config_take_live(struct config *cur, const struct config *next);

/*
 * Splits "host:port" or "[v6addr]:port" (the form of listen, mirror and
 * nbd_listen) into host (brackets stripped) and port (decimal, 1..65535,
 * written without leading zeros), for getaddrinfo(). The host must be
 * non-empty, without whitespace, and contain no ':' unless bracketed; the
 * port is digits only (no service names). Pure: no lookups. host or port
 * may be NULL to check the shape only. Returns 0, or -1 with errno EINVAL
 * (bad shape) or ENAMETOOLONG (does not fit hostlen/portlen).
 */
int config_split_hostport(const char *s, char *host, size_t hostlen,
    char *port, size_t portlen);

#endif
