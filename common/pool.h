/*
 * pool.h: a free list for the data paths' per-op objects (a primary
 * request, a mirror op) with their payload, so that a steady stream of
 * small ops reuses the same few buffers instead of going through malloc.
 *
 * Objects up to pl_size bytes come from the list, each pl_size long, and
 * go back to it while it holds fewer than pl_max; larger ones come from
 * malloc and go back to free. The list keeps at most pl_max * pl_size
 * bytes after a burst. One thread only: the event thread that allocates
 * and frees the ops. Under AddressSanitizer a kept object is poisoned, so
 * using it after pool_put is reported as using it after free would be.
 */
#ifndef DUET_POOL_H
#define DUET_POOL_H

#include <stddef.h>
#include <stdint.h>

struct pool {
	size_t		 pl_size;	/* bytes per pooled object */
	unsigned	 pl_max;	/* objects kept at most */
	unsigned	 pl_n;		/* objects kept now */
	void		*pl_free;	/* linked through each object's start */
	uint64_t	 pl_reused;	/* pool_get served from the list */
};

void  pool_init(struct pool *pl, size_t size, unsigned max);
/* Frees what the list holds; pool_put frees from then on. */
void  pool_fini(struct pool *pl);
/* size bytes, or NULL when malloc fails. */
void *pool_get(struct pool *pl, size_t size);
/* obj from pool_get(pl, size), with the same size. */
void  pool_put(struct pool *pl, void *obj, size_t size);

#endif
