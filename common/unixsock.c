/* unixsock.c: see unixsock.h. */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/unixsock.h"

static int
unlink_stale(const struct sockaddr_un *sun, const char *key, char *err,
    size_t errlen)
{
	struct stat st;
	int fd, rc;

	if (lstat(sun->sun_path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s %s: %s", key, sun->sun_path,
		    strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s %s: exists and is not a socket", key,
		    sun->sun_path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) != -1) {
		rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
		close(fd);
		if (rc == 0) {
			snprintf(err, errlen, "%s %s: in use by a running "
			    "process", key, sun->sun_path);
			return -1;
		}
	}
	if (unlink(sun->sun_path) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "%s %s: unlink: %s", key, sun->sun_path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
unixsock_listen(const char *path, const char *group, const char *key,
    const char *group_key, int backlog, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct group gr, *grp = NULL;
	char buf[16384];
	mode_t old;
	int fd, rc;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (path == NULL || *path == '\0' ||
	    strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "%s \"%s\": empty or longer than %zu "
		    "bytes", key, path ? path : "", sizeof(sun.sun_path) - 1);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if (group != NULL && *group != '\0') {
		rc = getgrnam_r(group, &gr, buf, sizeof(buf), &grp);
		if (grp == NULL) {
			snprintf(err, errlen, "%s \"%s\": %s", group_key, group,
			    rc != 0 ? strerror(rc) : "no such group");
			return -1;
		}
	}
	if (unlink_stale(&sun, key, err, errlen) != 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(err, errlen, "%s %s: socket: %s", key, path,
		    strerror(errno));
		return -1;
	}
	/* Born 0660 at most: no moment when others may connect. */
	old = umask(0117);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc != 0) {
		snprintf(err, errlen, "%s %s: bind: %s", key, path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	if (chmod(path, 0660) != 0)
		snprintf(err, errlen, "%s %s: chmod: %s", key, path,
		    strerror(errno));
	else if (grp != NULL && chown(path, (uid_t)-1, grp->gr_gid) != 0)
		snprintf(err, errlen, "%s \"%s\": chown %s: %s", group_key,
		    group, path, strerror(errno));
	else if (listen(fd, backlog) != 0)
		snprintf(err, errlen, "%s %s: listen: %s", key, path,
		    strerror(errno));
	else
		return fd;
	close(fd);
	unlink(path);
	return -1;
}
