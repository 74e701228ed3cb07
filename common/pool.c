/*
 * pool.c: the per-op free list (see pool.h). Measured in job a of
 * bench/e2e.sh before it existed: malloc and free were about 2 % of the
 * primary's CPU and 1 % of the mirror's, for objects of 4 KiB and more,
 * which glibc's per-thread cache does not keep.
 */
#include <stdlib.h>

#include <sanitizer/asan_interface.h>

#include "common/pool.h"

/*
 * Under AddressSanitizer a kept object is poisoned, so a use after
 * pool_put is still reported, as after free(). Elsewhere these do nothing.
 */
#define POOL_HIDE(pl, obj)	ASAN_POISON_MEMORY_REGION((obj), (pl)->pl_size)
#define POOL_SHOW(pl, obj)	ASAN_UNPOISON_MEMORY_REGION((obj), (pl)->pl_size)

void
pool_init(struct pool *pl, size_t size, unsigned max)
{
	pl->pl_size = size < sizeof(void *) ? sizeof(void *) : size;
	pl->pl_max = max;
	pl->pl_n = 0;
	pl->pl_free = NULL;
	pl->pl_reused = 0;
}

void
pool_fini(struct pool *pl)
{
	void *obj;

	while ((obj = pl->pl_free) != NULL) {
		POOL_SHOW(pl, obj);
		pl->pl_free = *(void **)obj;
		free(obj);
	}
	pl->pl_n = 0;
	pl->pl_max = 0;		/* later puts free */
}

void *
pool_get(struct pool *pl, size_t size)
{
	void *obj;

	if (size > pl->pl_size)
		return malloc(size);
	if ((obj = pl->pl_free) != NULL) {
		POOL_SHOW(pl, obj);
		pl->pl_free = *(void **)obj;
		pl->pl_n--;
		pl->pl_reused++;
		return obj;
	}
	return malloc(pl->pl_size);
}

void
pool_put(struct pool *pl, void *obj, size_t size)
{
	if (obj == NULL)
		return;
	if (size > pl->pl_size || pl->pl_n >= pl->pl_max) {
		free(obj);
		return;
	}
	*(void **)obj = pl->pl_free;
	pl->pl_free = obj;
	pl->pl_n++;
	POOL_HIDE(pl, obj);
}
