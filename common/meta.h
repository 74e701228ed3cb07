/*
 * meta.h: the volume's metadata file (volume.metadata).
 *
 * It holds the volume's identity (UUID, size, extent size), its data
 * generations (current and history), the role it last ran in, the
 * clean-shutdown flag, the activity log (AL: the hot 4 MiB extents whose
 * writes may not be on both sides yet) and the change record (one bit per
 * extent that the peer must be sent).
 *
 * Layout: two header slots, then two bitmap copies.
 *
 *   0            header slot 0 (META_SLOT bytes)
 *   META_SLOT    header slot 1
 *   2*META_SLOT  bitmap copy 0 (bitmap bytes, rounded up to 4 KiB)
 *   ...          bitmap copy 1
 *
 * Each header carries a counter and a checksum; the valid header with the
 * higher counter wins. A header update writes the slot the winner is not
 * in and fdatasyncs it, so a torn write leaves the previous header intact.
 * A bitmap update writes the copy the winner does not point at, syncs it,
 * then commits with a header naming that copy and its checksum. Nothing is
 * ever overwritten that the current header depends on.
 */
#ifndef DUET_META_H
#define DUET_META_H

#include <stddef.h>
#include <stdint.h>

#define META_UUID_LEN	16
#define META_HISTORY	4		/* older generations remembered */
#define META_AL_MAX	1536		/* activity log entries (fit a slot) */
#define META_AL_EXTENT	(4u << 20)	/* bytes per activity log extent */
#define META_SLOT	8192

enum meta_role { ROLE_NONE = 0, ROLE_PRIMARY = 1, ROLE_MIRROR = 2 };

#define META_F_CLEAN		0x01u	/* stopped cleanly: the AL is empty */
#define META_F_INCONSISTENT	0x02u	/* mirror: a resync is unfinished */
#define META_F_PEER_HAS_GEN	0x04u	/* primary: a mirror holds md_gen */
#define META_F_DISK_FAILED	0x08u	/* primary: reads failed; the data is
					 * stale (writes went to the mirror) */
#define META_F_DISCARD		0x10u	/* mirror: resolve --discard-local is
					 * armed for the next split brain */

struct meta {
	uint8_t		md_uuid[META_UUID_LEN];	/* all zero: no identity yet */
	uint64_t	md_size;
	uint32_t	md_extent_size;
	uint64_t	md_gen;			/* 0: none yet */
	uint64_t	md_history[META_HISTORY];	/* newest first, 0 = empty */
	uint32_t	md_role;		/* enum meta_role */
	uint32_t	md_flags;		/* META_F_* */
	uint32_t	md_al_count;
	uint32_t	md_al[META_AL_MAX];	/* hot AL extent numbers */
};

struct meta_file;

/* Bytes of the change record for a volume: one bit per extent. */
uint64_t meta_bitmap_bytes(uint64_t size, uint32_t extent_size);

/*
 * Opens path, or creates it (all bits clear, *m zeroed but for size and
 * extent size) when it does not exist. bits gets the change record
 * (meta_bitmap_bytes long). Returns 0 (loaded), 1 (created) or -1 with
 * the reason in err, naming the path. A file recorded for another size or
 * extent size is refused.
 */
int meta_open(const char *path, uint64_t size, uint32_t extent_size,
    struct meta *m, uint8_t *bits, struct meta_file **mfp, char *err,
    size_t errlen);
void meta_close(struct meta_file *mf);

/* Commits *m (not the bitmap): durable on return. 0 or -1 with err. */
int meta_write(struct meta_file *mf, const struct meta *m, char *err,
    size_t errlen);
/* Commits bits, then *m with it: durable on return. 0 or -1 with err. */
int meta_write_bitmap(struct meta_file *mf, const struct meta *m,
    const uint8_t *bits, char *err, size_t errlen);

/* Pure: one header slot (META_SLOT bytes) to and from *m. */
void meta_encode(const struct meta *m, uint64_t counter, uint32_t bm_copy,
    uint64_t bm_sum, uint8_t *out);
int meta_decode(const uint8_t *buf, struct meta *m, uint64_t *counter,
    uint32_t *bm_copy, uint64_t *bm_sum, char *err, size_t errlen);

int meta_has_uuid(const struct meta *m);
/* "xxxxxxxx-xxxx-..." into out[37]. */
void meta_uuid_str(const uint8_t *uuid, char *out);
const char *meta_role_name(uint32_t role);

#endif
