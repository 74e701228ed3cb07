/*
 * bench/shim/nodelay.c: an LD_PRELOAD library that turns on TCP_NODELAY on
 * every TCP socket that accept() or accept4() returns. bench/e2e.sh builds
 * it into its work directory (it is not a bench binary: the Makefile only
 * builds bench/NAME.c) and loads it into the mirror qemu-storage-daemon only.
 *
 * Why: the NBD server of QEMU before 8.0 (Debian 12 ships 7.2) sets neither
 * TCP_NODELAY nor TCP_CORK on the connections it accepts. Once two or more
 * requests are in flight, a small reply then waits for the client's delayed
 * ACK, about 40 ms. Upstream fixed that in 8.0 (commit bd2cd4a441, "nbd/
 * server: push pending frames after sending reply"). QEMU itself is not
 * changed; without the shim the QEMU figures would measure that bug.
 *
 *   cc -O2 -shared -fPIC -o nodelay.so bench/shim/nodelay.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd)
{
	int v = 0;
	socklen_t n = sizeof v;

	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &n) != 0 ||
	    (v != AF_INET && v != AF_INET6))
		return;
	n = sizeof v;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &n) != 0 || v != SOCK_STREAM)
		return;
	v = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v);
}

int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	static int (*next)(int, struct sockaddr *, socklen_t *);
	int r;

	if (!next)
		*(void **)&next = dlsym(RTLD_NEXT, "accept");
	r = next(fd, sa, len);
	nodelay(r);
	return r;
}

int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	static int (*next)(int, struct sockaddr *, socklen_t *, int);
	int r;

	if (!next)
		*(void **)&next = dlsym(RTLD_NEXT, "accept4");
	r = next(fd, sa, len, flags);
	nodelay(r);
	return r;
}
