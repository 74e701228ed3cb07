/*
 * benchutil.h: what the C benchmarks (bench/engine.c, bench/dispatch.c)
 * share: fatal errors, the host's CPU counters, option parsing.
 */
#ifndef DUET_BENCHUTIL_H
#define DUET_BENCHUTIL_H

#include <stdint.h>
#include <sys/time.h>

/* The program name bench_die puts first; set by main. */
extern const char *bench_name;

/* Prints "NAME: message" on stderr (stdout flushed first), exits 1. */
void bench_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* The host's "cpu" line of /proc/stat, in clock ticks; ok 0 if unread. */
struct bench_cpu {
	int		ok;
	uint64_t	total;
	uint64_t	busy;	/* user, nice, system, irq, softirq */
	uint64_t	steal;
};
void bench_cpu_ticks(struct bench_cpu *ct);

double bench_tv_us(const struct timeval *tv);

/* "all" (every bit of n) or one of names[0..n): its bit; 0 if none. */
int bench_parse_sel(const char *s, const char *const *names, int n);
/* A decimal count; bench_die names what on anything else. */
uint64_t bench_parse_u64(const char *s, const char *what);

#endif
