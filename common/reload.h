/* reload.h: what SIGHUP does in both daemons. */
#ifndef DUET_RELOAD_H
#define DUET_RELOAD_H

struct config;

/*
 * Rereads path. A broken file is logged and changes nothing. Otherwise
 * each key that differs from cur is logged as needing a restart: no key
 * of the schema can change under a running daemon yet.
 */
void reload_config(const char *path, const struct config *cur);

#endif
