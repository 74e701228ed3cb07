/*
 * meta.c: see meta.h. Layout of the record (little-endian):
 *   0 magic "DUETMETA"  8 version u32  12 reserved u32  16 uuid[16]
 *  32 size u64  40 extent_size u32  ... zero ...  4088 FNV-1a 64 of 0..4087
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/meta.h"

#define META_MAGIC	"DUETMETA"
#define META_VERSION	1
#define META_SUM_OFF	(META_SIZE - 8)

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t
fnv1a(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (n-- > 0)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

void
meta_encode(const struct meta *m, uint8_t *out)
{
	memset(out, 0, META_SIZE);
	memcpy(out, META_MAGIC, 8);
	put64(out + 8, META_VERSION);
	memcpy(out + 16, m->md_uuid, META_UUID_LEN);
	put64(out + 32, m->md_size);
	put64(out + 40, m->md_extent_size);
	put64(out + META_SUM_OFF, fnv1a(out, META_SUM_OFF));
}

int
meta_decode(const uint8_t *buf, size_t len, struct meta *m, char *err,
    size_t errlen)
{
	if (len != META_SIZE) {
		snprintf(err, errlen, "is %zu bytes, not %d", len, META_SIZE);
		return -1;
	}
	if (memcmp(buf, META_MAGIC, 8) != 0) {
		snprintf(err, errlen, "not a duet metadata file (bad magic)");
		return -1;
	}
	if ((uint32_t)get64(buf + 8) != META_VERSION) {
		snprintf(err, errlen, "metadata version %u, this duet reads %u",
		    (unsigned)get64(buf + 8), META_VERSION);
		return -1;
	}
	if (get64(buf + META_SUM_OFF) != fnv1a(buf, META_SUM_OFF)) {
		snprintf(err, errlen, "checksum mismatch (corrupt)");
		return -1;
	}
	memset(m, 0, sizeof(*m));
	memcpy(m->md_uuid, buf + 16, META_UUID_LEN);
	m->md_size = get64(buf + 32);
	m->md_extent_size = (uint32_t)get64(buf + 40);
	return 0;
}

int
meta_load(const char *path, struct meta *m, char *err, size_t errlen)
{
	uint8_t buf[META_SIZE + 1];
	char why[256];
	ssize_t n;
	size_t got = 0;
	int fd;

	memset(m, 0, sizeof(*m));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 1;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (got < sizeof(buf) &&
	    (n = read(fd, buf + got, sizeof(buf) - got)) != 0) {
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	if (meta_decode(buf, got, m, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		return -1;
	}
	return 0;
}

static int
write_all(int fd, const uint8_t *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, p, n)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
meta_store(const char *path, const struct meta *m, char *err, size_t errlen)
{
	uint8_t buf[META_SIZE];
	char tmp[4200], dir[4200];
	const char *step;
	int fd = -1, dfd = -1;

	meta_encode(m, buf);
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	step = "create";
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1)
		goto fail;
	step = "write";
	if (write_all(fd, buf, sizeof(buf)) == -1)
		goto fail;
	step = "fsync";
	if (fsync(fd) == -1)
		goto fail;
	close(fd);
	fd = -1;
	step = "rename";
	if (rename(tmp, path) == -1)
		goto fail;
	/* The rename is durable only once the directory is. */
	step = "fsync directory";
	if ((dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fsync(dfd) == -1)
		goto fail;
	close(dfd);
	return 0;
fail:
	snprintf(err, errlen, "%s: %s: %s", step[0] == 'r' || step[0] == 'f' ?
	    path : tmp, step, strerror(errno));
	if (fd != -1) {
		close(fd);
		unlink(tmp);
	}
	if (dfd != -1)
		close(dfd);
	return -1;
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
