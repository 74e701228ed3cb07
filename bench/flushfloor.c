/*
 * flushfloor.c: what a durable FLUSH costs when both copies share a disk.
 *
 * e2e's job c writes 4 KiB and flushes, one at a time. nbdkit's FLUSH is
 * one fdatasync; duet's is two, the primary's and the mirror's, at the same
 * time, and in the benchmark both volumes sit on one disk. This measures
 * that floor with no TLS or daemon in the way, on files in DIR:
 *
 *   one  pwrite 4 KiB into file A, fdatasync A; again
 *   two  pwrite 4 KiB into A and into B, fdatasync A and B at once (B's on
 *        a second thread); again
 *   peer as two, but B belongs to a child process across a loopback TCP
 *        connection, as a mirror's copy would: send the 4 KiB, pwrite A,
 *        wait for the child's reply that it wrote them into B; then send a
 *        flush request, fdatasync A, wait for the reply that B's fdatasync
 *        returned. Plain TCP and blocking reads: the least a replicator
 *        that waits for its mirror pays, before TLS or a protocol.
 *
 * in alternating rounds (ROUNDS of each over --seconds), and prints cycles
 * per second of each. A replicator whose flush reaches both disks pays at
 * least the difference between two's (or peer's) cycle and one's, on top of
 * whatever one copy costs.
 *
 * Usage: flushfloor [--seconds S] [--quick] [--size BYTES] [DIR]
 * (defaults: 6 s, --quick 3 s; two files of 64 MiB; DIR /var/tmp, where
 * bench/e2e.sh puts its volumes).
 */
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/util/benchutil.h"
#include "common/util.h"

#define ROUNDS	3
#define BLOCK	4096

enum { ONE, TWO, PEER, NLOOPS };

/* PEER's request: 'W' (BLOCK bytes follow), 'F' (flush) or 'Q' (quit). */
struct peer_req {
	char		type;
	char		pad[7];
	uint64_t	off;
};

static struct {
	int		 fd_b;
	pthread_mutex_t	 lock;
	pthread_cond_t	 cv;
	int		 go;		/* B's fdatasync requested */
	int		 done;		/* ... and returned */
	int		 quit;
} F = { .fd_b = -1, .lock = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER };

static void *
flusher(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&F.lock);
	for (;;) {
		while (!F.go && !F.quit)
			pthread_cond_wait(&F.cv, &F.lock);
		if (F.quit)
			break;
		F.go = 0;
		pthread_mutex_unlock(&F.lock);
		if (fdatasync(F.fd_b) == -1)
			bench_die("fdatasync: %s", strerror(errno));
		pthread_mutex_lock(&F.lock);
		F.done = 1;
		pthread_cond_broadcast(&F.cv);
	}
	pthread_mutex_unlock(&F.lock);
	return NULL;
}

/* A file of size bytes in dir, written through and synced; unlinked. */
static int
mkfile(const char *dir, uint64_t size)
{
	char path[4096], buf[1 << 16];
	uint64_t off;
	size_t i;
	int fd;

	snprintf(path, sizeof(path), "%s/flushfloor.XXXXXX", dir);
	if ((fd = mkstemp(path)) == -1)
		bench_die("%s: %s", path, strerror(errno));
	(void)unlink(path);
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 131 + 7);
	for (off = 0; off < size; off += sizeof(buf))
		if (pwrite(fd, buf, sizeof(buf), (off_t)off) !=
		    (ssize_t)sizeof(buf))
			bench_die("writing %s: %s", path, strerror(errno));
	if (fdatasync(fd) == -1)
		bench_die("fdatasync %s: %s", path, strerror(errno));
	return fd;
}

/* All of len bytes from or to fd; dies on an error or EOF. */
static void
xfer(int fd, void *buf, size_t len, int out)
{
	char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
		if (n == 0)
			bench_die("peer connection closed");
		if (n < 0) {
			if (errno == EINTR)
				continue;
			bench_die("peer connection: %s", strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
}

/* The child's side of "peer": what a mirror does with each request. */
static void
peer_serve(int sk, int fd_b)
{
	struct peer_req req;
	static char buf[BLOCK];
	char ok = 0;

	for (;;) {
		xfer(sk, &req, sizeof(req), 0);
		if (req.type == 'Q')
			_exit(0);
		if (req.type == 'W') {
			xfer(sk, buf, BLOCK, 0);
			if (pwrite(fd_b, buf, BLOCK, (off_t)req.off) != BLOCK)
				bench_die("peer pwrite: %s", strerror(errno));
		} else if (fdatasync(fd_b) == -1) {
			bench_die("peer fdatasync: %s", strerror(errno));
		}
		xfer(sk, &ok, 1, 1);
	}
}

/* A child serving B over loopback TCP; returns the connected socket. */
static int
peer_start(int fd_b, pid_t *pid)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int ls, sk, one = 1;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((ls = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    bind(ls, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(ls, 1) == -1 ||
	    getsockname(ls, (struct sockaddr *)&sin, &len) == -1)
		bench_die("loopback listener: %s", strerror(errno));
	fflush(stdout);
	if ((*pid = fork()) == -1)
		bench_die("fork: %s", strerror(errno));
	if (*pid == 0) {
		close(ls);
		if ((sk = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
		    connect(sk, (struct sockaddr *)&sin, sizeof(sin)) == -1)
			bench_die("peer connect: %s", strerror(errno));
		(void)setsockopt(sk, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
		peer_serve(sk, fd_b);
	}
	if ((sk = accept(ls, NULL, NULL)) == -1)
		bench_die("accept: %s", strerror(errno));
	(void)setsockopt(sk, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(ls);
	return sk;
}

/* Sends the peer a request; a write carries buf. */
static void
peer_send(int sk, char type, uint64_t off, char *buf)
{
	struct peer_req req = { .type = type, .off = off };

	xfer(sk, &req, sizeof(req), 1);
	if (buf != NULL)
		xfer(sk, buf, BLOCK, 1);
}

/* Waits for the peer's reply to the oldest request it has not answered. */
static void
peer_wait(int sk)
{
	char ok;

	xfer(sk, &ok, 1, 0);
}

/* Cycles of loop `how` (ONE, TWO, PEER; sk: PEER's socket) in ns. */
static uint64_t
run(int fd_a, int how, int sk, uint64_t blocks, uint64_t ns)
{
	static char buf[BLOCK] = { 1 };
	uint64_t t0 = now_ns(), n = 0, off;

	while (now_ns() - t0 < ns) {
		off = (uint64_t)random() % blocks * BLOCK;
		buf[0]++;
		/* The peer's copy is sent first: the two writes overlap. */
		if (how == PEER)
			peer_send(sk, 'W', off, buf);
		if (pwrite(fd_a, buf, BLOCK, (off_t)off) != BLOCK ||
		    (how == TWO && pwrite(F.fd_b, buf, BLOCK, (off_t)off) !=
		    BLOCK))
			bench_die("pwrite: %s", strerror(errno));
		if (how == PEER) {
			peer_wait(sk);
			peer_send(sk, 'F', 0, NULL);
		} else if (how == TWO) {
			pthread_mutex_lock(&F.lock);
			F.go = 1;
			F.done = 0;
			pthread_cond_broadcast(&F.cv);
			pthread_mutex_unlock(&F.lock);
		}
		if (fdatasync(fd_a) == -1)
			bench_die("fdatasync: %s", strerror(errno));
		if (how == PEER) {
			peer_wait(sk);
		} else if (how == TWO) {
			pthread_mutex_lock(&F.lock);
			while (!F.done)
				pthread_cond_wait(&F.cv, &F.lock);
			pthread_mutex_unlock(&F.lock);
		}
		n++;
	}
	return n;
}

int
main(int argc, char **argv)
{
	static const char *const label[NLOOPS] = { "one file",
	    "two files, fdatasync at once",
	    "two, the second behind a loopback TCP peer" };
	uint64_t secs = 6, size = 64u << 20, n[NLOOPS] = { 0 }, per;
	const char *dir = NULL, *usage = "usage: flushfloor [--seconds S] "
	    "[--quick] [--size BYTES] [DIR]";
	pthread_t thr;
	double rate;
	pid_t pid;
	int fd_a, sk, st, i, r;

	bench_name = "flushfloor";
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			secs = bench_parse_u64(argv[++i], "--seconds");
		else if (strcmp(argv[i], "--quick") == 0)
			secs = 3;
		else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
			size = bench_parse_u64(argv[++i], "--size");
		else if (argv[i][0] != '-' && dir == NULL)
			dir = argv[i];
		else
			bench_die("%s", usage);
	}
	if (secs == 0 || size < BLOCK)
		bench_die("%s", usage);
	if (dir == NULL)
		dir = "/var/tmp";
	fd_a = mkfile(dir, size);
	F.fd_b = mkfile(dir, size);
	sk = peer_start(F.fd_b, &pid);	/* forks before any thread */
	if ((errno = pthread_create(&thr, NULL, flusher, NULL)) != 0)
		bench_die("pthread_create: %s", strerror(errno));
	per = secs * UINT64_C(1000000000) / (NLOOPS * ROUNDS);
	for (r = 0; r < ROUNDS; r++)
		for (i = 0; i < NLOOPS; i++)
			n[i] += run(fd_a, i, sk, size / BLOCK, per);
	peer_send(sk, 'Q', 0, NULL);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		bench_die("the peer process failed");
	pthread_mutex_lock(&F.lock);
	F.quit = 1;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.lock);
	pthread_join(thr, NULL);
	for (i = 0; i < NLOOPS; i++) {
		rate = (double)n[i] * 1e9 / (double)(per * ROUNDS);
		printf("%s%s: %.0f%s/s (%.1f us)", i > 0 ? "; " : "", label[i],
		    rate, i == ONE ? " write+fdatasync" : "", 1e6 / rate);
	}
	printf("\n");
	close(sk);
	close(fd_a);
	close(F.fd_b);
	return 0;
}
