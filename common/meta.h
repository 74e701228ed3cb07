/*
 * meta.h: the volume's metadata file (volume.metadata): its identity today
 * (UUID, size, extent size); generations, role and change records join it
 * later. One 4 KiB record with a magic, a version and a checksum, replaced
 * atomically (temp file, fsync, rename, fsync of the directory), so a crash
 * leaves either the old record or the new one, never a mix.
 */
#ifndef DUET_META_H
#define DUET_META_H

#include <stddef.h>
#include <stdint.h>

#define META_UUID_LEN	16
#define META_SIZE	4096

struct meta {
	uint8_t		md_uuid[META_UUID_LEN];	/* all zero: no identity yet */
	uint64_t	md_size;
	uint32_t	md_extent_size;
};

/* Pure: encode into out[META_SIZE]; decode checks magic, version, checksum.
 * decode returns 0 or -1 with the reason in err. */
void meta_encode(const struct meta *m, uint8_t *out);
int meta_decode(const uint8_t *buf, size_t len, struct meta *m, char *err,
    size_t errlen);

/* Returns 0 (loaded), 1 (no file yet: *m zeroed) or -1 (err says why,
 * naming the path). */
int meta_load(const char *path, struct meta *m, char *err, size_t errlen);
/* Returns 0 or -1 (err names the path and the failing step). */
int meta_store(const char *path, const struct meta *m, char *err,
    size_t errlen);

int meta_has_uuid(const struct meta *m);
/* "xxxxxxxx-xxxx-..." into out[37]. */
void meta_uuid_str(const uint8_t *uuid, char *out);

#endif
