/* reload.h: what SIGHUP does in both daemons. */
#ifndef DUET_RELOAD_H
#define DUET_RELOAD_H

struct config;

/*
 * Rereads path. A broken file is logged and changes nothing. Otherwise
 * each key that differs from cur is logged: those that may change under a
 * running daemon (config_take_live) are copied into cur, and then
 * applied(arg) runs, if any did; the others take effect after a restart.
 */
void reload_config(const char *path, struct config *cur,
    void (*applied)(void *arg), void *arg);

#endif
