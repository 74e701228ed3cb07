/*
 * unixsock.h: a listening Unix stream socket for the daemons' local
 * clients (NBD, status): mode 0660, a configurable group, never reachable
 * by others even for a moment.
 */
#ifndef DUET_UNIXSOCK_H
#define DUET_UNIXSOCK_H

#include <stddef.h>

/*
 * Binds and listens at path (non-blocking, close-on-exec). A stale socket
 * left by a daemon that died is replaced; a path that is not a socket (a
 * typo must not delete a file) or a socket a live process answers on is
 * refused. group "" or NULL keeps the daemon's group. Errors name the
 * configuration keys given (key for the path, group_key for the group).
 * Returns the fd, or -1 with err.
 */
int unixsock_listen(const char *path, const char *group, const char *key,
    const char *group_key, int backlog, char *err, size_t errlen);

#endif
