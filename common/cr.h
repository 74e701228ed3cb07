/*
 * cr.h: the change record and the activity log, in memory, over the
 * metadata file (meta.h). Event thread only.
 *
 * The change record (c_bits) has one bit per extent (volume.extent_size)
 * whose data the peer must be sent. The activity log (AL) is the set of
 * hot META_AL_EXTENT extents that have writes not yet on both sides. The
 * invariant, kept across any crash:
 *
 *   on disk (bitmap copy of the header) | hot AL extents
 *      covers  in-memory bits | extents with writes in flight
 *
 * so that after a crash, the recorded bits plus every extent of the AL
 * are all that can differ. A write takes AL references (cr_begin) before
 * it is issued; making an extent hot is committed to the file first. An
 * extent leaves the AL (least recently used, no references) only after
 * the bits set inside it are on disk, and (cr_set_durable) once a flush
 * of the volume has made its writes durable: a completed write may still
 * sit in the page cache, and a power cut then loses it on one side only.
 * Clearing bits is lazy (cr_save).
 */
#ifndef DUET_CR_H
#define DUET_CR_H

#include <stdint.h>

#include "common/meta.h"

/* An AL extent unused this long leaves the AL (cr_retire). */
#define CR_RETIRE_NS	(10 * UINT64_C(1000000000))

struct config;
struct event;
struct event_base;

struct cr {
	struct meta	 c_m;		/* identity, generations, role, AL */
	struct meta_file *c_mf;
	char		 c_path[4096];
	uint8_t		*c_bits;
	uint64_t	 c_nbits;	/* extents in the volume */
	uint64_t	 c_ndirty;	/* bits set */
	uint32_t	 c_ext_size;
	uint32_t	 c_al_cap;	/* AL entries kept when cold */
	uint32_t	*c_al_refs;	/* parallel to c_m.md_al */
	uint64_t	*c_al_tick;	/* last use (now_ns, a write's start or
					 * end), parallel to md_al */
	int32_t		*c_al_slot;	/* AL extent -> index in md_al, or -1 */
	uint64_t	 c_nal;		/* AL extents in the volume */
	int		 c_unsaved;	/* bits differ from the file */
	int		 c_set_unsaved;	/* ... and some were set */
	int		 c_failed;	/* a metadata write failed */
	uint64_t	 c_al_commits;	/* header writes for the AL */
	uint64_t	 c_bm_commits;	/* bitmap writes */
	const uint64_t	*c_durable;	/* cr_set_durable; NULL: always */
	const uint64_t	*c_flush_errors;
	uint64_t	 c_errors_seen;
	uint64_t	 c_durable_now;	/* *c_durable at cr_check_flushes */
	uint64_t	 c_nmarks;	/* cr_mark calls so far */
	int		(*c_flush)(void *, int);
	void		*c_flush_arg;
	void		(*c_on_mark)(void *, uint64_t, uint64_t);
	void		*c_on_mark_arg;
};

/*
 * Opens (or creates) cfg's volume.metadata. After an unclean stop every
 * extent of the AL is marked changed. Returns 0 (loaded), 1 (created), or
 * -1 with err naming the file.
 */
int  cr_open(struct cr *c, const struct config *cfg, char *err, size_t errlen);
/* Saves the record; clean: marks the stop clean (nothing in flight). */
int  cr_close(struct cr *c, int clean);

/*
 * Takes refs references on the AL extents of [off, off+len). Returns 0,
 * 1 when the AL is full of busy extents (the range was marked changed and
 * saved instead: pass tracked = 0 to cr_end), or -1 when the metadata
 * file cannot be written (the write must fail).
 */
int  cr_begin(struct cr *c, uint64_t off, uint64_t len, unsigned refs);
void cr_end(struct cr *c, uint64_t off, uint64_t len, unsigned refs,
    int tracked);
/* Drops AL entries unused for idle_ns (their bits saved first), so that
 * a crash resyncs what was recently written, not all that ever was. */
int  cr_retire(struct cr *c, uint64_t idle_ns);
/*
 * From now on an AL entry leaves the AL (retired or evicted) only when
 * its last write ended before *durable (now_ns; read atomically): the
 * start of the latest volume flush known to have succeeded (struct
 * storage's st_durable_ns). Idle entries that wait for one call
 * flush(arg, 0), which starts one in the background; an AL at
 * META_AL_MAX with no other way to make room calls flush(arg, 1), which
 * flushes before it returns 0 (or fails: -1, and the range is marked
 * instead). *errors counts failed flushes (st_flush_errors).
 */
void cr_set_durable(struct cr *c, const uint64_t *durable,
    const uint64_t *errors, int (*flush)(void *, int), void *arg);
/*
 * Takes in the flushes that ended since the last call. One that failed
 * may have dropped what the page cache held: the AL's regions, the only
 * ones that can hold such writes (every extent, while a mirror's resync
 * is unfinished: its copies are not in the AL), are marked changed and
 * saved (logged), for the next resync to copy. Called before anything
 * trusts *durable, and where a failed flush must show at once.
 */
void cr_check_flushes(struct cr *c);

/* Marks the extents of [off, off+len) changed (in memory: the caller
 * holds AL references on them, or calls cr_save). */
void cr_mark(struct cr *c, uint64_t off, uint64_t len);
void cr_mark_all(struct cr *c);
/* fn(arg, off, len) is called for every cr_mark and cr_mark_all (the
 * whole volume): a resync must not clear, on an older copy's ack, the
 * mark of a write it did not copy. */
void cr_set_mark_hook(struct cr *c,
    void (*fn)(void *arg, uint64_t off, uint64_t len), void *arg);
void cr_clear(struct cr *c, uint64_t ext);
int  cr_test(const struct cr *c, uint64_t ext);
/* The first set bit at or after ext, or c_nbits. */
uint64_t cr_next(const struct cr *c, uint64_t ext);
/* ORs in a peer's record (c_nbits bits). */
void cr_merge(struct cr *c, const uint8_t *bits);

/* Writes the bitmap if it changed. 0 or -1 (logged). */
int  cr_save(struct cr *c);
/* Writes the header after a change to c_m. 0 or -1 (logged). */
int  cr_commit(struct cr *c);
/* A persistent timer on base: every 5 s, idle AL extents retire and
 * cleared bits reach the file. NULL on no memory; event_free() it. */
struct event *cr_timer_new(struct cr *c, struct event_base *base);
/* Starts a new data generation (the old one goes to the history). */
int  cr_new_gen(struct cr *c);
/* Whether gen is the current generation or in the history. */
int  cr_knows_gen(const struct meta *m, uint64_t gen);

#endif
