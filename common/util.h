/*
 * Small things every module uses: invariant checks and a few helpers.
 *
 * VERIFY is always on: it guards invariants whose violation would corrupt
 * data (hastd's PJDLOG_VERIFY). ASSERT is for debug builds only.
 */
#ifndef DUET_UTIL_H
#define DUET_UTIL_H

#include <stddef.h>
#include <stdint.h>

void verify_failed(const char *expr, const char *file, int line)
    __attribute__((noreturn));

#define VERIFY(e) \
	((e) ? (void)0 : verify_failed(#e, __FILE__, __LINE__))

#ifdef NDEBUG
#define ASSERT(e) ((void)0)
#else
#define ASSERT(e) VERIFY(e)
#endif

#define CONTAINER_OF(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Frees *pp and clears it, so a stale pointer cannot be freed twice. */
#define FREE_AND_NULL(pp) do { free(*(pp)); *(pp) = NULL; } while (0)

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

/* Whether len bytes at buf are all zero. */
int buf_is_zero(const void *buf, size_t len);

#endif
