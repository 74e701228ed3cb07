/*
 * flushfloor.c: what a durable FLUSH costs when both copies share a disk.
 *
 * e2e's job c writes 4 KiB and flushes, one at a time. nbdkit's FLUSH is
 * one fdatasync; duet's is two, the primary's and the mirror's, at the same
 * time, and in the benchmark both volumes sit on one disk. This measures
 * that floor with no network, TLS or daemon in the way, on files in DIR:
 *
 *   one  pwrite 4 KiB into file A, fdatasync A; again
 *   two  pwrite 4 KiB into A and into B, fdatasync A and B at once (B's on
 *        a second thread); again
 *
 * in alternating rounds (ROUNDS of each over --seconds), and prints cycles
 * per second of each and their ratio. A replicator whose flush reaches both
 * disks pays at least the difference of the two cycles on top of whatever
 * one copy costs.
 *
 * Usage: flushfloor [--seconds S] [--quick] [--size BYTES] [DIR]
 * (defaults: 6 s, --quick 3 s; two files of 64 MiB; DIR /var/tmp, where
 * bench/e2e.sh puts its volumes).
 */
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

/* Cycles of one write (two: two writes) and flush in ns nanoseconds. */
static uint64_t
run(int fd_a, int two, uint64_t blocks, uint64_t ns)
{
	static char buf[BLOCK] = { 1 };
	uint64_t t0 = now_ns(), n = 0, off;

	while (now_ns() - t0 < ns) {
		off = (uint64_t)random() % blocks * BLOCK;
		buf[0]++;
		if (pwrite(fd_a, buf, BLOCK, (off_t)off) != BLOCK ||
		    (two && pwrite(F.fd_b, buf, BLOCK, (off_t)off) != BLOCK))
			bench_die("pwrite: %s", strerror(errno));
		if (two) {
			pthread_mutex_lock(&F.lock);
			F.go = 1;
			F.done = 0;
			pthread_cond_broadcast(&F.cv);
			pthread_mutex_unlock(&F.lock);
		}
		if (fdatasync(fd_a) == -1)
			bench_die("fdatasync: %s", strerror(errno));
		if (two) {
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
	uint64_t secs = 6, size = 64u << 20, n[2] = { 0, 0 }, per;
	const char *dir = NULL, *usage = "usage: flushfloor [--seconds S] "
	    "[--quick] [--size BYTES] [DIR]";
	pthread_t thr;
	double rate[2];
	int fd_a, i, r;

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
	if ((errno = pthread_create(&thr, NULL, flusher, NULL)) != 0)
		bench_die("pthread_create: %s", strerror(errno));
	per = secs * UINT64_C(1000000000) / (2 * ROUNDS);
	for (r = 0; r < ROUNDS; r++)
		for (i = 0; i < 2; i++)
			n[i] += run(fd_a, i, size / BLOCK, per);
	pthread_mutex_lock(&F.lock);
	F.quit = 1;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.lock);
	pthread_join(thr, NULL);
	for (i = 0; i < 2; i++)
		rate[i] = (double)n[i] * 1e9 / (double)(per * ROUNDS);
	printf("one file: %.0f write+fdatasync/s (%.1f us each); "
	    "two files, fdatasync at once: %.0f/s (%.1f us); ratio %.2f\n",
	    rate[0], 1e6 / rate[0], rate[1], 1e6 / rate[1],
	    rate[1] / rate[0]);
	close(fd_a);
	close(F.fd_b);
	return 0;
}
