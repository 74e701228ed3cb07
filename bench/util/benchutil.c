/* benchutil.c: see benchutil.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/util/benchutil.h"

const char *bench_name = "bench";

void
bench_die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: ", bench_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void
bench_cpu_ticks(struct bench_cpu *ct)
{
	unsigned long long v[8];
	FILE *f = fopen("/proc/stat", "r");

	memset(ct, 0, sizeof(*ct));
	if (f == NULL)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
	    &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
		ct->ok = 1;
		ct->total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] +
		    v[7];
		ct->busy = v[0] + v[1] + v[2] + v[5] + v[6];
		ct->steal = v[7];
	}
	fclose(f);
}

double
bench_tv_us(const struct timeval *tv)
{
	return (double)tv->tv_sec * 1e6 + (double)tv->tv_usec;
}

int
bench_parse_sel(const char *s, const char *const *names, int n)
{
	int i;

	if (strcmp(s, "all") == 0)
		return (1 << n) - 1;
	for (i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return 1 << i;
	return 0;
}

uint64_t
bench_parse_u64(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
		bench_die("bad %s: %s", what, s);
	return v;
}
