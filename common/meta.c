/*
 * meta.c: see meta.h. Header slot layout (little-endian):
 *
 *    0 magic "DUETMETA"   8 version u32   12 bitmap copy u32
 *   16 counter u64       24 uuid[16]     40 size u64
 *   48 extent_size u32   52 al_count u32 56 gen u64
 *   64 history[4] u64    96 role u32    100 flags u32
 *  104 bitmap checksum u64               112 al[al_count] u32 ...
 *  META_SLOT-8: FNV-1a 64 of everything before it
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/meta.h"

#define META_MAGIC	"DUETMETA"
#define META_VERSION	2
#define META_SUM_OFF	(META_SLOT - 8)
#define META_AL_OFF	112

_Static_assert(META_AL_OFF + 4 * META_AL_MAX <= META_SUM_OFF,
    "the activity log does not fit a header slot");

struct meta_file {
	int		mf_fd;
	char		mf_path[4096];
	uint64_t	mf_counter;	/* of the current header */
	uint32_t	mf_bm_copy;	/* the copy the current header names */
	uint64_t	mf_bm_sum;
	uint64_t	mf_bm_bytes;
	uint64_t	mf_bm_span;	/* bm_bytes rounded up to 4 KiB */
};

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint64_t
fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (n-- > 0)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

uint64_t
meta_bitmap_bytes(uint64_t size, uint32_t extent_size)
{
	uint64_t n = (size + extent_size - 1) / extent_size;

	return (n + 7) / 8;
}

void
meta_encode(const struct meta *m, uint64_t counter, uint32_t bm_copy,
    uint64_t bm_sum, uint8_t *out)
{
	memset(out, 0, META_SLOT);
	memcpy(out, META_MAGIC, 8);
	put32(out + 8, META_VERSION);
	put32(out + 12, bm_copy);
	put64(out + 16, counter);
	memcpy(out + 24, m->md_uuid, META_UUID_LEN);
	put64(out + 40, m->md_size);
	put32(out + 48, m->md_extent_size);
	put32(out + 52, m->md_al_count);
	put64(out + 56, m->md_gen);
	for (int i = 0; i < META_HISTORY; i++)
		put64(out + 64 + 8 * i, m->md_history[i]);
	put32(out + 96, m->md_role);
	put32(out + 100, m->md_flags);
	put64(out + 104, bm_sum);
	for (uint32_t i = 0; i < m->md_al_count && i < META_AL_MAX; i++)
		put32(out + META_AL_OFF + 4 * i, m->md_al[i]);
	put64(out + META_SUM_OFF, fnv1a(out, META_SUM_OFF));
}

int
meta_decode(const uint8_t *buf, struct meta *m, uint64_t *counter,
    uint32_t *bm_copy, uint64_t *bm_sum, char *err, size_t errlen)
{
	if (memcmp(buf, META_MAGIC, 8) != 0) {
		snprintf(err, errlen, "not a duet metadata file (bad magic)");
		return -1;
	}
	if (get32(buf + 8) != META_VERSION) {
		snprintf(err, errlen, "metadata version %u, this duet reads %u",
		    get32(buf + 8), META_VERSION);
		return -1;
	}
	if (get64(buf + META_SUM_OFF) != fnv1a(buf, META_SUM_OFF)) {
		snprintf(err, errlen, "checksum mismatch (corrupt)");
		return -1;
	}
	memset(m, 0, sizeof(*m));
	*bm_copy = get32(buf + 12);
	*counter = get64(buf + 16);
	memcpy(m->md_uuid, buf + 24, META_UUID_LEN);
	m->md_size = get64(buf + 40);
	m->md_extent_size = get32(buf + 48);
	m->md_al_count = get32(buf + 52);
	m->md_gen = get64(buf + 56);
	for (int i = 0; i < META_HISTORY; i++)
		m->md_history[i] = get64(buf + 64 + 8 * i);
	m->md_role = get32(buf + 96);
	m->md_flags = get32(buf + 100);
	*bm_sum = get64(buf + 104);
	if (*bm_copy > 1 || m->md_al_count > META_AL_MAX ||
	    m->md_role > ROLE_MIRROR) {
		snprintf(err, errlen, "field out of range (corrupt)");
		return -1;
	}
	for (uint32_t i = 0; i < m->md_al_count; i++)
		m->md_al[i] = get32(buf + META_AL_OFF + 4 * i);
	return 0;
}

static int
pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	ssize_t w;

	while (n > 0) {
		if ((w = pwrite(fd, p, n, (off_t)off)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static int
pread_all(int fd, uint8_t *p, size_t n, uint64_t off)
{
	ssize_t r;

	while (n > 0) {
		if ((r = pread(fd, p, n, (off_t)off)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0) {
			errno = EIO;	/* shorter than its layout: truncated */
			return -1;
		}
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static uint64_t
bm_offset(const struct meta_file *mf, uint32_t copy)
{
	return 2 * (uint64_t)META_SLOT + copy * mf->mf_bm_span;
}

/*
 * A new file: written whole under a temporary name, synced, renamed and
 * the directory synced, so a crash leaves no file or a complete one.
 */
static int
meta_create(struct meta_file *mf, const struct meta *m, char *err,
    size_t errlen)
{
	char tmp[4200], dir[4200];
	uint8_t slot[META_SLOT];
	const char *step, *what = tmp;
	int fd = -1, dfd = -1;

	snprintf(tmp, sizeof(tmp), "%s.tmp", mf->mf_path);
	snprintf(dir, sizeof(dir), "%s", mf->mf_path);
	step = "create";
	if ((fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1)
		goto fail;
	step = "write";
	mf->mf_counter = 1;
	mf->mf_bm_copy = 0;
	{
		uint8_t *zero = calloc(1, mf->mf_bm_bytes + 1);

		if (zero == NULL)
			goto fail;
		mf->mf_bm_sum = fnv1a(zero, mf->mf_bm_bytes);
		free(zero);
	}
	meta_encode(m, mf->mf_counter, 0, mf->mf_bm_sum, slot);
	/* Header slot = counter % 2, as commit() keeps it. */
	if (pwrite_all(fd, slot, sizeof(slot), META_SLOT) == -1 ||
	    ftruncate(fd, (off_t)bm_offset(mf, 2)) == -1)
		goto fail;
	step = "fsync";
	if (fsync(fd) == -1)
		goto fail;
	step = "rename";
	what = mf->mf_path;
	if (rename(tmp, mf->mf_path) == -1)
		goto fail;
	step = "fsync directory";
	if ((dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fsync(dfd) == -1)
		goto fail;
	close(dfd);
	mf->mf_fd = fd;
	return 0;
fail:
	snprintf(err, errlen, "%s: %s: %s", what, step, strerror(errno));
	if (fd != -1) {
		close(fd);
		unlink(tmp);
	}
	if (dfd != -1)
		close(dfd);
	return -1;
}

int
meta_open(const char *path, uint64_t size, uint32_t extent_size,
    struct meta *m, uint8_t *bits, struct meta_file **mfp, char *err,
    size_t errlen)
{
	struct meta_file *mf;
	struct meta cand[2];
	uint64_t counter[2], sum[2];
	uint32_t copy[2];
	uint8_t slot[META_SLOT];
	char why[2][256];
	int ok[2], order[2], i, fd;

	if ((mf = calloc(1, sizeof(*mf))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	snprintf(mf->mf_path, sizeof(mf->mf_path), "%s", path);
	mf->mf_bm_bytes = meta_bitmap_bytes(size, extent_size);
	mf->mf_bm_span = (mf->mf_bm_bytes + 4095) & ~(uint64_t)4095;
	memset(bits, 0, mf->mf_bm_bytes);

	if ((fd = open(path, O_RDWR | O_CLOEXEC)) == -1) {
		if (errno != ENOENT) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			free(mf);
			return -1;
		}
		memset(m, 0, sizeof(*m));
		m->md_size = size;
		m->md_extent_size = extent_size;
		m->md_flags = META_F_CLEAN;
		if (meta_create(mf, m, err, errlen) != 0) {
			free(mf);
			return -1;
		}
		*mfp = mf;
		return 1;
	}
	mf->mf_fd = fd;
	for (i = 0; i < 2; i++) {
		ok[i] = 0;
		snprintf(why[i], sizeof(why[i]), "unreadable");
		if (pread_all(fd, slot, sizeof(slot), (uint64_t)i * META_SLOT) != 0) {
			snprintf(why[i], sizeof(why[i]), "%s", strerror(errno));
			continue;
		}
		ok[i] = meta_decode(slot, &cand[i], &counter[i], &copy[i],
		    &sum[i], why[i], sizeof(why[i])) == 0;
	}
	/* Newest valid header first; its bitmap must match its checksum. */
	order[0] = ok[1] && (!ok[0] || counter[1] > counter[0]) ? 1 : 0;
	order[1] = 1 - order[0];
	for (int k = 0; k < 2; k++) {
		i = order[k];
		if (!ok[i])
			continue;
		if (cand[i].md_size != size || cand[i].md_extent_size != extent_size) {
			snprintf(err, errlen, "%s records size %llu and extent "
			    "size %u, the configuration says %llu and %u", path,
			    (unsigned long long)cand[i].md_size,
			    cand[i].md_extent_size, (unsigned long long)size,
			    extent_size);
			goto fail;
		}
		mf->mf_bm_copy = copy[i];
		if (pread_all(fd, bits, mf->mf_bm_bytes, bm_offset(mf, copy[i])) != 0) {
			snprintf(why[i], sizeof(why[i]), "reading its change "
			    "record: %s", strerror(errno));
			continue;
		}
		if (fnv1a(bits, mf->mf_bm_bytes) != sum[i]) {
			snprintf(why[i], sizeof(why[i]), "change record checksum "
			    "mismatch (corrupt)");
			continue;
		}
		*m = cand[i];
		mf->mf_counter = counter[i];
		mf->mf_bm_sum = sum[i];
		*mfp = mf;
		return 0;
	}
	snprintf(err, errlen, "%s: no valid header: slot 0: %s; slot 1: %s",
	    path, why[0], why[1]);
fail:
	close(fd);
	free(mf);
	return -1;
}

void
meta_close(struct meta_file *mf)
{
	if (mf == NULL)
		return;
	close(mf->mf_fd);
	free(mf);
}

/* Writes the header into the slot the current one is not in. */
static int
commit(struct meta_file *mf, const struct meta *m, uint32_t copy,
    uint64_t sum, char *err, size_t errlen)
{
	uint8_t slot[META_SLOT];
	uint64_t counter = mf->mf_counter + 1;

	meta_encode(m, counter, copy, sum, slot);
	if (pwrite_all(mf->mf_fd, slot, sizeof(slot),
	    (counter % 2) * META_SLOT) != 0 || fdatasync(mf->mf_fd) != 0) {
		snprintf(err, errlen, "%s: writing the header: %s", mf->mf_path,
		    strerror(errno));
		return -1;
	}
	mf->mf_counter = counter;
	mf->mf_bm_copy = copy;
	mf->mf_bm_sum = sum;
	return 0;
}

int
meta_write(struct meta_file *mf, const struct meta *m, char *err,
    size_t errlen)
{
	return commit(mf, m, mf->mf_bm_copy, mf->mf_bm_sum, err, errlen);
}

int
meta_write_bitmap(struct meta_file *mf, const struct meta *m,
    const uint8_t *bits, char *err, size_t errlen)
{
	uint32_t copy = 1 - mf->mf_bm_copy;

	if (pwrite_all(mf->mf_fd, bits, mf->mf_bm_bytes, bm_offset(mf, copy)) != 0 ||
	    fdatasync(mf->mf_fd) != 0) {
		snprintf(err, errlen, "%s: writing the change record: %s",
		    mf->mf_path, strerror(errno));
		return -1;
	}
	return commit(mf, m, copy, fnv1a(bits, mf->mf_bm_bytes), err, errlen);
}

int
meta_has_uuid(const struct meta *m)
{
	for (int i = 0; i < META_UUID_LEN; i++)
		if (m->md_uuid[i] != 0)
			return 1;
	return 0;
}

void
meta_uuid_str(const uint8_t *u, char *out)
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4], u[5],
	    u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

const char *
meta_role_name(uint32_t role)
{
	return role == ROLE_PRIMARY ? "primary" : role == ROLE_MIRROR ?
	    "mirror" : "none";
}
