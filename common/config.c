/*
 * config.c: see config.h. The schema is a table (sections of keys, each
 * with a kind, a destination in struct config and its limits), so that
 * "unknown key", "wrong type", "missing" and "out of range" are decided in
 * one place and every message has the same "FILE:LINE: section.key: reason"
 * shape. Settings are walked in file order, so the first error reported is
 * the first one in the file.
 *
 * We read the file ourselves and hand libconfig a string: a read error then
 * becomes "cannot read: strerror" instead of flex's exit() on a failed read
 * (a directory, EIO), and we keep the text for the check below.
 *
 * libconfig 1.5 stores an integer literal without an L suffix in an int and
 * silently truncates it: "size = 4294971392;" would arrive as 4096. For
 * every plain-int setting we find its literal on its source line again and
 * refuse it when it does not fit in an int.
 *
 * cfg is written only on success, so a reload that fails keeps the old one.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "common/config.h"
#include "common/util.h"

#define CONFIG_MAX_FILE	(1024 * 1024)	/* a config is a few hundred bytes */

#define KIB	(UINT64_C(1) << 10)
#define MIB	(UINT64_C(1) << 20)
#define TIB	(UINT64_C(1) << 40)

enum config_kind {
	KIND_STRING,		/* any string that fits */
	KIND_NAME,		/* [A-Za-z0-9._-]+ */
	KIND_ADDR,		/* "host:port" or "[v6]:port" */
	KIND_MODE,		/* sync | memsync | async */
	KIND_COUNT,		/* integer, into a uint32_t */
	KIND_SIZE,		/* integer or "20G", into a uint32_t or uint64_t */
	KIND_BOOL,		/* true | false, into an int */
};

#define KEY_REQUIRED	0x01	/* must be present */
#define KEY_NONEMPTY	0x02	/* a string that may not be "" */
#define KEY_POW2	0x04	/* a size that must be a power of two */
#define KEY_SEEN_NBD	0x08	/* remember it was set (name-based default) */
#define KEY_SEEN_STATUS	0x10
#define KEY_LIVE	0x20	/* may change under a running daemon */

struct config_key {
	const char	*k_name;
	enum config_kind k_kind;
	size_t		 k_off;		/* offsetof(struct config, ...) */
	size_t		 k_size;	/* sizeof the destination */
	int		 k_flags;
	uint64_t	 k_min, k_max;	/* counts and sizes */
	uint64_t	 k_align;	/* sizes: must be a multiple (0 = any) */
	const char	*k_range;	/* what to say when out of range */
};

struct config_section {
	const char		*s_name;
	int			 s_required;
	const struct config_key	*s_keys;
	size_t			 s_nkeys;
};

#define FIELD(f)	offsetof(struct config, f), sizeof(((struct config *)0)->f)

static const struct config_key config_volume_keys[] = {
	{ "name", KIND_NAME, FIELD(vol_name), KEY_REQUIRED | KEY_NONEMPTY,
	    0, 0, 0, NULL },
	{ "path", KIND_STRING, FIELD(vol_path), KEY_REQUIRED | KEY_NONEMPTY,
	    0, 0, 0, NULL },
	{ "size", KIND_SIZE, FIELD(vol_size), KEY_REQUIRED,
	    4096, 8388607 * TIB, 4096,
	    "must be > 0 and a multiple of 4096 (at most 8388607T)" },
	{ "metadata", KIND_STRING, FIELD(vol_metadata),
	    KEY_REQUIRED | KEY_NONEMPTY, 0, 0, 0, NULL },
	/* A resync frame carries at least one extent, and frames at most
	 * 4 MiB (PRIMARY_MAX_BLOCK, MIRROR_MAX_PAYLOAD). */
	{ "extent_size", KIND_SIZE, FIELD(extent_size), KEY_POW2,
	    4 * KIB, 4 * MIB, 0, "must be a power of two, 4K..4M" },
	{ "al_extents", KIND_COUNT, FIELD(al_extents), 0,
	    1, 1536, 0, "must be 1..1536" },
};

static const struct config_key config_primary_keys[] = {
	{ "nbd_socket", KIND_STRING, FIELD(nbd_socket),
	    KEY_NONEMPTY | KEY_SEEN_NBD, 0, 0, 0, NULL },
	{ "nbd_group", KIND_STRING, FIELD(nbd_group), 0, 0, 0, 0, NULL },
	{ "nbd_listen", KIND_ADDR, FIELD(nbd_listen), 0, 0, 0, 0, NULL },
	{ "mirror", KIND_ADDR, FIELD(mirror_addr), 0, 0, 0, 0, NULL },
	{ "mode", KIND_MODE, FIELD(mode), 0, 0, 0, 0, NULL },
	{ "max_inflight", KIND_COUNT, FIELD(max_inflight), 0,
	    1, 65536, 0, "must be 1..65536" },
	{ "max_inflight_bytes", KIND_SIZE, FIELD(max_inflight_bytes), 0,
	    MIB, UINT64_MAX, 0, "must be at least 1M" },
	{ "max_clients", KIND_COUNT, FIELD(max_clients), KEY_LIVE,
	    1, 4096, 0, "must be 1..4096" },
	{ "resync_rate", KIND_SIZE, FIELD(resync_rate), KEY_LIVE,
	    0, UINT64_MAX, 0, "must be 0 (no limit) or bytes per second" },
	{ "resync_checksums", KIND_BOOL, FIELD(resync_checksums), KEY_LIVE,
	    0, 0, 0, NULL },
	{ "ping_interval", KIND_COUNT, FIELD(ping_interval), KEY_LIVE,
	    1, 3600, 0, "must be 1..3600 (seconds)" },
	{ "idle_timeout", KIND_COUNT, FIELD(idle_timeout), KEY_LIVE,
	    2, 86400, 0, "must be 2..86400 (seconds)" },
	{ "connect_timeout", KIND_COUNT, FIELD(connect_timeout), KEY_LIVE,
	    1, 3600, 0, "must be 1..3600 (seconds)" },
	{ "congestion_timeout", KIND_COUNT, FIELD(congestion_timeout),
	    KEY_LIVE, 1, 86400, 0, "must be 1..86400 (seconds)" },
	{ "reconnect_max", KIND_COUNT, FIELD(reconnect_max), KEY_LIVE,
	    1, 3600, 0, "must be 1..3600 (seconds)" },
	{ "stop_timeout", KIND_COUNT, FIELD(stop_timeout), KEY_LIVE,
	    1, 3600, 0, "must be 1..3600 (seconds)" },
};

static const struct config_key config_mirror_keys[] = {
	{ "listen", KIND_ADDR, FIELD(listen), KEY_NONEMPTY, 0, 0, 0, NULL },
	{ "task_groups", KIND_COUNT, FIELD(task_groups), 0,
	    1, 256, 0, "must be 1..256" },
	{ "tasks_per_group", KIND_COUNT, FIELD(tasks_per_group), 0,
	    1, 256, 0, "must be 1..256" },
	{ "range_size", KIND_SIZE, FIELD(range_size), KEY_POW2,
	    64 * KIB, UINT64_C(1) << 62, 0,
	    "must be a power of two, at least 64K" },
	{ "inline_us", KIND_COUNT, FIELD(inline_us), 0,
	    0, 1000000, 0, "must be 0..1000000 (microseconds)" },
	{ "poll_us", KIND_COUNT, FIELD(poll_us), 0,
	    0, 1000, 0, "must be 0..1000 (microseconds)" },
	{ "idle_timeout", KIND_COUNT, FIELD(session_timeout), KEY_LIVE,
	    2, 86400, 0, "must be 2..86400 (seconds)" },
	{ "hello_timeout", KIND_COUNT, FIELD(hello_timeout), KEY_LIVE,
	    1, 3600, 0, "must be 1..3600 (seconds)" },
};

static const struct config_key config_tls_keys[] = {
	{ "ca", KIND_STRING, FIELD(tls_ca), KEY_REQUIRED | KEY_NONEMPTY,
	    0, 0, 0, NULL },
	{ "cert", KIND_STRING, FIELD(tls_cert), KEY_REQUIRED | KEY_NONEMPTY,
	    0, 0, 0, NULL },
	{ "key", KIND_STRING, FIELD(tls_key), KEY_REQUIRED | KEY_NONEMPTY,
	    0, 0, 0, NULL },
	{ "peer_name", KIND_STRING, FIELD(tls_peer_name),
	    KEY_REQUIRED | KEY_NONEMPTY, 0, 0, 0, NULL },
};

static const struct config_key config_status_keys[] = {
	{ "socket", KIND_STRING, FIELD(status_socket),
	    KEY_NONEMPTY | KEY_SEEN_STATUS, 0, 0, 0, NULL },
	{ "group", KIND_STRING, FIELD(status_group), 0, 0, 0, 0, NULL },
};

#define SECTION(n, req, keys)	{ n, req, keys, sizeof(keys) / sizeof(keys[0]) }

static const struct config_section config_sections[] = {
	SECTION("volume", 1, config_volume_keys),
	SECTION("primary", 0, config_primary_keys),
	SECTION("mirror", 0, config_mirror_keys),
	SECTION("tls", 1, config_tls_keys),
	SECTION("status", 0, config_status_keys),
};
#define CONFIG_NSECTIONS (sizeof(config_sections) / sizeof(config_sections[0]))

/* State of one config_load() call. */
struct config_ctx {
	const char	*cx_path;	/* as the caller named it */
	const char	*cx_text;	/* the file's contents, NUL-terminated */
	char		*cx_err;
	size_t		 cx_errlen;
	struct config	*cx_cfg;
	int		 cx_seen;	/* KEY_SEEN_* of the keys that were set */
	struct {
		size_t	 off;		/* the key's k_off */
		int	 line;
	}		 cx_lines[64];	/* the keys that were set */
	size_t		 cx_nlines;
};

/* The line that set the key stored at off, or 0 (defaulted). */
static int
config_key_line(const struct config_ctx *cx, size_t off)
{
	for (size_t i = 0; i < cx->cx_nlines; i++)
		if (cx->cx_lines[i].off == off)
			return cx->cx_lines[i].line;
	return 0;
}

static int
config_fail(struct config_ctx *cx, const config_setting_t *s, const char *sect,
    const char *key, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * Formats "FILE:LINE: sect.key: reason" (no LINE without s, no ".key"
 * without key). Returns -1 so callers can "return config_fail(...)".
 */
static int
config_fail(struct config_ctx *cx, const config_setting_t *s, const char *sect,
    const char *key, const char *fmt, ...)
{
	char reason[512], where[4200];
	const char *file = cx->cx_path;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (s != NULL) {
		if (config_setting_source_file(s) != NULL)
			file = config_setting_source_file(s);
		snprintf(where, sizeof(where), "%s:%u", file,
		    (unsigned)config_setting_source_line(s));
	} else
		snprintf(where, sizeof(where), "%s", file);
	if (cx->cx_err != NULL && cx->cx_errlen > 0)
		snprintf(cx->cx_err, cx->cx_errlen, "%s: %s%s%s: %s", where,
		    sect, key != NULL ? "." : "", key != NULL ? key : "",
		    reason);
	errno = EINVAL;
	return -1;
}

static void
config_fail_across(struct config_ctx *cx, const char *key, size_t off,
    size_t other_off, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * A check across two keys failed: "FILE:LINE: key: reason", at the line
 * that set key, else the line that set the other one.
 */
static void
config_fail_across(struct config_ctx *cx, const char *key, size_t off,
    size_t other_off, const char *fmt, ...)
{
	char reason[512];
	va_list ap;
	int line;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if ((line = config_key_line(cx, off)) == 0)
		line = config_key_line(cx, other_off);
	if (cx->cx_err != NULL && cx->cx_errlen > 0)
		snprintf(cx->cx_err, cx->cx_errlen, "%s:%d: %s: %s",
		    cx->cx_path, line, key, reason);
	errno = EINVAL;
}

int
config_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mult = 1;
	const char *p = s;

	if (s == NULL || !isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	switch (*p) {
	case '\0':
		break;
	case 'k': case 'K':
		mult = KIB;
		break;
	case 'm': case 'M':
		mult = MIB;
		break;
	case 'g': case 'G':
		mult = UINT64_C(1) << 30;
		break;
	case 't': case 'T':
		mult = TIB;
		break;
	default:
		return -1;
	}
	if (*p != '\0' && p[1] != '\0')
		return -1;
	if (v > UINT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

const char *
config_mode_name(enum repl_mode m)
{
	switch (m) {
	case MODE_SYNC:
		return "sync";
	case MODE_MEMSYNC:
		return "memsync";
	case MODE_ASYNC:
		return "async";
	}
	return "unknown";
}

/* Copies src into dst[dstlen]; -1 (ENAMETOOLONG) when it does not fit. */
static int
config_copy(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	if (dst == NULL)
		return 0;
	if (srclen >= dstlen) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(dst, src, srclen);
	dst[srclen] = '\0';
	return 0;
}

int
config_split_hostport(const char *s, char *host, size_t hostlen, char *port,
    size_t portlen)
{
	const char *h, *he, *p;
	unsigned long n = 0;
	char buf[8];

	if (s == NULL)
		goto bad;
	if (*s == '[') {
		h = s + 1;
		if ((he = strchr(h, ']')) == NULL || he == h || he[1] != ':')
			goto bad;
		if (memchr(h, '[', (size_t)(he - h)) != NULL)
			goto bad;
		p = he + 2;
	} else {
		h = s;
		if ((he = strchr(h, ':')) == NULL || he == h)
			goto bad;
		if (memchr(h, '[', (size_t)(he - h)) != NULL ||
		    memchr(h, ']', (size_t)(he - h)) != NULL)
			goto bad;
		p = he + 1;
	}
	for (const char *c = h; c < he; c++)
		if (isspace((unsigned char)*c) || iscntrl((unsigned char)*c))
			goto bad;
	if (*p == '\0')
		goto bad;
	for (const char *c = p; *c != '\0'; c++) {
		if (!isdigit((unsigned char)*c))
			goto bad;
		n = n * 10 + (unsigned long)(*c - '0');
		if (n > 65535)
			goto bad;
	}
	if (n == 0)
		goto bad;
	if (config_copy(host, hostlen, h, (size_t)(he - h)) == -1)
		return -1;
	snprintf(buf, sizeof(buf), "%lu", n);
	return config_copy(port, portlen, buf, strlen(buf));
bad:
	errno = EINVAL;
	return -1;
}

/*
 * libconfig 1.5 truncates an integer literal that does not fit in an int
 * (see the top of the file). Finds "name = LITERAL" (or "name: LITERAL") on
 * the setting's line of the main file and returns -1 when the literal does
 * not fit in an int, so what libconfig stored is not what was written
 * (hex too: 1.5 reads 0xFFFFFFFF as -1). Returns 0 when all is well or
 * when the literal cannot be found (an included file, an odd layout): the
 * check is a safety net, not a second parser.
 */
static int
config_check_int_literal(struct config_ctx *cx, const config_setting_t *s)
{
	const char *name = config_setting_name(s), *line, *end, *c;
	unsigned lineno = config_setting_source_line(s), i;
	size_t nlen = strlen(name);

	if (config_setting_type(s) != CONFIG_TYPE_INT ||
	    config_setting_source_file(s) != NULL || lineno == 0)
		return 0;
	line = cx->cx_text;
	for (i = 1; i < lineno && line != NULL; i++)
		if ((line = strchr(line, '\n')) != NULL)
			line++;
	if (line == NULL)
		return 0;
	if ((end = strchr(line, '\n')) == NULL)
		end = line + strlen(line);
	for (c = line; c + nlen <= end; c++) {
		const char *v;
		unsigned long long mag = 0;
		int neg = 0, base = 10, digits = 0, over = 0;

		if (strncmp(c, name, nlen) != 0 || (c > line &&
		    (isalnum((unsigned char)c[-1]) || c[-1] == '_' ||
		    c[-1] == '-' || c[-1] == '*')))
			continue;
		v = c + nlen;
		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		if (v == end || (*v != '=' && *v != ':'))
			continue;
		v++;
		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		if (v < end && (*v == '-' || *v == '+'))
			neg = *v++ == '-';
		if (end - v > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
			base = 16;
			v += 2;
		}
		for (; v < end && isxdigit((unsigned char)*v); v++) {
			unsigned d;

			if (base == 10 && !isdigit((unsigned char)*v))
				break;
			d = isdigit((unsigned char)*v) ? (unsigned)(*v - '0') :
			    (unsigned)(tolower((unsigned char)*v) - 'a' + 10);
			if (mag > (ULLONG_MAX - d) / (unsigned)base)
				over = 1;
			else
				mag = mag * (unsigned)base + d;
			digits++;
		}
		if (digits == 0)
			return 0;
		if (over || (neg ? mag > (unsigned long long)INT_MAX + 1 :
		    mag > INT_MAX))
			return -1;
		return 0;
	}
	return 0;
}

/* Reads an integer setting into *v; -1 with the message set. */
static int
config_get_integer(struct config_ctx *cx, const config_setting_t *s,
    const char *sect, const char *key, long long *v)
{
	int t = config_setting_type(s);

	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
		return config_fail(cx, s, sect, key, "expected an integer");
	if (config_check_int_literal(cx, s) == -1)
		return config_fail(cx, s, sect, key, "integer too large for "
		    "libconfig: add an L suffix or write it as a string");
	*v = config_setting_get_int64(s);
	return 0;
}

static void
config_store_uint(void *dst, size_t size, uint64_t v)
{
	if (size == sizeof(uint32_t)) {
		uint32_t v32 = (uint32_t)v;

		memcpy(dst, &v32, sizeof(v32));
	} else
		memcpy(dst, &v, sizeof(v));
}

/* One key of one section: type, syntax and range; stores into cx_cfg. */
static int
config_do_key(struct config_ctx *cx, const config_setting_t *s,
    const char *sect, const struct config_key *k)
{
	char *dst = (char *)cx->cx_cfg + k->k_off;
	const char *str = NULL;
	uint64_t v = 0;
	long long iv;
	size_t len = 0;

	switch (k->k_kind) {
	case KIND_STRING:
	case KIND_NAME:
	case KIND_ADDR:
	case KIND_MODE:
		if (config_setting_type(s) != CONFIG_TYPE_STRING)
			return config_fail(cx, s, sect, k->k_name,
			    "expected a string");
		str = config_setting_get_string(s);
		len = strlen(str);
		if ((k->k_flags & KEY_NONEMPTY) && len == 0)
			return config_fail(cx, s, sect, k->k_name,
			    "must not be empty");
		break;
	case KIND_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return config_fail(cx, s, sect, k->k_name,
			    "expected true or false");
		*(int *)(void *)dst = config_setting_get_bool(s);
		return 0;
	case KIND_COUNT:
		if (config_get_integer(cx, s, sect, k->k_name, &iv) == -1)
			return -1;
		if (iv < 0 || (uint64_t)iv < k->k_min ||
		    (uint64_t)iv > k->k_max)
			return config_fail(cx, s, sect, k->k_name, "%s",
			    k->k_range);
		config_store_uint(dst, k->k_size, (uint64_t)iv);
		return 0;
	case KIND_SIZE:
		if (config_setting_type(s) == CONFIG_TYPE_STRING) {
			str = config_setting_get_string(s);
			if (config_parse_size(str, &v) == -1)
				return config_fail(cx, s, sect, k->k_name,
				    "bad size \"%s\" (use a number with K, M, "
				    "G or T)", str);
		} else if (config_setting_type(s) == CONFIG_TYPE_INT ||
		    config_setting_type(s) == CONFIG_TYPE_INT64) {
			if (config_get_integer(cx, s, sect, k->k_name,
			    &iv) == -1)
				return -1;
			if (iv < 0)
				return config_fail(cx, s, sect, k->k_name,
				    "bad size %lld (must not be negative)", iv);
			v = (uint64_t)iv;
		} else
			return config_fail(cx, s, sect, k->k_name,
			    "expected a size (an integer or a string such as "
			    "\"64K\")");
		if (v < k->k_min || v > k->k_max ||
		    (k->k_align != 0 && v % k->k_align != 0) ||
		    ((k->k_flags & KEY_POW2) && (v & (v - 1)) != 0))
			return config_fail(cx, s, sect, k->k_name, "%s",
			    k->k_range);
		config_store_uint(dst, k->k_size, v);
		return 0;
	}

	/* strings */
	if (k->k_kind == KIND_MODE) {
		enum repl_mode m;

		if (strcmp(str, "sync") == 0)
			m = MODE_SYNC;
		else if (strcmp(str, "memsync") == 0)
			m = MODE_MEMSYNC;
		else if (strcmp(str, "async") == 0)
			m = MODE_ASYNC;
		else
			return config_fail(cx, s, sect, k->k_name,
			    "must be sync, memsync or async");
		memcpy(dst, &m, sizeof(m));
		return 0;
	}
	if (len >= k->k_size)
		return config_fail(cx, s, sect, k->k_name,
		    "too long (at most %zu bytes)", k->k_size - 1);
	if (k->k_kind == KIND_NAME)
		for (size_t i = 0; i < len; i++)
			if (!isalnum((unsigned char)str[i]) && str[i] != '.' &&
			    str[i] != '_' && str[i] != '-')
				return config_fail(cx, s, sect, k->k_name,
				    "must match [A-Za-z0-9._-]{1,%zu}",
				    k->k_size - 1);
	if (k->k_kind == KIND_ADDR && len > 0 &&
	    config_split_hostport(str, NULL, 0, NULL, 0) == -1)
		return config_fail(cx, s, sect, k->k_name,
		    "must be host:port (port 1..65535, [v6]:port for IPv6), "
		    "not \"%s\"", str);
	memcpy(dst, str, len + 1);
	cx->cx_seen |= k->k_flags & (KEY_SEEN_NBD | KEY_SEEN_STATUS);
	return 0;
}

static int
config_do_section(struct config_ctx *cx, const config_setting_t *g,
    const struct config_section *sec)
{
	int n = config_setting_length(g);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		size_t j;

		for (j = 0; j < sec->s_nkeys; j++)
			if (strcmp(name, sec->s_keys[j].k_name) == 0)
				break;
		if (j == sec->s_nkeys)
			return config_fail(cx, s, sec->s_name, name,
			    "unknown key");
		if (config_do_key(cx, s, sec->s_name, &sec->s_keys[j]) == -1)
			return -1;
		if (cx->cx_nlines < ARRAY_SIZE(cx->cx_lines)) {
			cx->cx_lines[cx->cx_nlines].off = sec->s_keys[j].k_off;
			cx->cx_lines[cx->cx_nlines++].line =
			    config_setting_source_line(s);
		}
	}
	for (size_t j = 0; j < sec->s_nkeys; j++)
		if ((sec->s_keys[j].k_flags & KEY_REQUIRED) &&
		    config_setting_get_member(g, sec->s_keys[j].k_name) == NULL)
			return config_fail(cx, g, sec->s_name,
			    sec->s_keys[j].k_name, "missing (required)");
	return 0;
}

static void
config_defaults(struct config *c)
{
	c->extent_size = 64 * KIB;
	c->mode = MODE_SYNC;
	c->max_inflight = 1024;
	c->max_inflight_bytes = 64 * MIB;
	c->max_clients = 64;
	c->al_extents = 1024;
	snprintf(c->listen, sizeof(c->listen), "0.0.0.0:7790");
	c->task_groups = 4;
	c->tasks_per_group = 4;
	c->range_size = 256 * MIB;
	c->inline_us = 50;
	c->poll_us = 400;
	c->ping_interval = 5;
	c->idle_timeout = 15;
	c->connect_timeout = 10;
	c->congestion_timeout = 10;
	c->reconnect_max = 30;
	c->stop_timeout = 30;
	c->session_timeout = 30;
	c->hello_timeout = 10;
}

/*
 * Reads path whole into a malloc'd, NUL-terminated buffer (*textp, the
 * caller frees; *lenp bytes before the NUL). -1 with errno on failure.
 */
static int
config_slurp(const char *path, char **textp, size_t *lenp)
{
	struct stat st;
	char *text = NULL;
	size_t len = 0;
	ssize_t n;
	int fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) == -1)
		goto fail;
	if (S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		goto fail;
	}
	if ((text = malloc(CONFIG_MAX_FILE + 1)) == NULL)
		goto fail;
	for (;;) {
		n = read(fd, text + len, CONFIG_MAX_FILE + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CONFIG_MAX_FILE) {
			errno = EFBIG;
			goto fail;
		}
	}
	text[len] = '\0';
	close(fd);
	*textp = text;
	*lenp = len;
	return 0;
fail:
	saved = errno;
	free(text);
	close(fd);
	errno = saved;
	return -1;
}

int
config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
	struct config_ctx cx;
	config_t lc;
	config_setting_t *root;
	const config_setting_t *found[CONFIG_NSECTIONS] = { NULL };
	struct config *c = NULL;
	char *text = NULL;
	size_t textlen = 0;
	int rc = -1, saved, n;

	memset(&cx, 0, sizeof(cx));
	cx.cx_path = path;
	cx.cx_err = err;
	cx.cx_errlen = errlen;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	config_init(&lc);

	if (config_slurp(path, &text, &textlen) == -1) {
		saved = errno;
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: cannot read: %s", path,
			    strerror(saved));
		errno = saved;
		goto out;
	}
	cx.cx_text = text;
	if (strlen(text) != textlen) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: not a text file (contains "
			    "a NUL byte)", path);
		errno = EINVAL;
		goto out;
	}
	if (!config_read_string(&lc, text)) {
		const char *f = config_error_file(&lc), *t;

		t = config_error_text(&lc) != NULL ? config_error_text(&lc) :
		    "unknown error";
		if (err != NULL && errlen > 0) {
			if (strcmp(t, "syntax error") == 0)
				snprintf(err, errlen, "%s:%d: syntax error",
				    f != NULL ? f : path,
				    config_error_line(&lc));
			else
				snprintf(err, errlen, "%s:%d: syntax error: %s",
				    f != NULL ? f : path,
				    config_error_line(&lc), t);
		}
		errno = EINVAL;
		goto out;
	}

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		saved = errno;
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: %s", path, strerror(saved));
		errno = saved;
		goto out;
	}
	cx.cx_cfg = c;
	if (strlen(path) >= sizeof(c->path)) {	/* open() let it through */
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: cannot read: %s", path,
			    strerror(ENAMETOOLONG));
		errno = ENAMETOOLONG;
		goto out;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	config_defaults(c);

	root = config_root_setting(&lc);
	n = config_setting_length(root);
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(root, i);
		const char *name = config_setting_name(g);
		size_t j;

		for (j = 0; j < CONFIG_NSECTIONS; j++)
			if (strcmp(name, config_sections[j].s_name) == 0)
				break;
		if (j == CONFIG_NSECTIONS) {
			config_fail(&cx, g, name, NULL, "unknown section");
			goto out;
		}
		if (!config_setting_is_group(g)) {
			config_fail(&cx, g, name, NULL,
			    "expected a group: %s = { ... };", name);
			goto out;
		}
		found[j] = g;
		if (config_do_section(&cx, g, &config_sections[j]) == -1)
			goto out;
	}
	for (size_t j = 0; j < CONFIG_NSECTIONS; j++)
		if (config_sections[j].s_required && found[j] == NULL) {
			config_fail(&cx, NULL, config_sections[j].s_name, NULL,
			    "missing (required)");
			goto out;
		}

	/* Checks across keys. */
	if (c->range_size < c->extent_size) {
		config_fail_across(&cx, "mirror.range_size",
		    offsetof(struct config, range_size),
		    offsetof(struct config, extent_size),
		    "must be at least volume.extent_size (%u)",
		    (unsigned)c->extent_size);
		goto out;
	}
	/* The mirror answers a ping: a link idle for longer than the ping
	 * interval is not dead. */
	if (c->idle_timeout <= c->ping_interval) {
		config_fail_across(&cx, "primary.idle_timeout",
		    offsetof(struct config, idle_timeout),
		    offsetof(struct config, ping_interval),
		    "must be greater than primary.ping_interval (%u)",
		    (unsigned)c->ping_interval);
		goto out;
	}
	/* One file serves both roles on a host (failover): a mirror that
	 * gives up sooner than the primary pings drops idle sessions. */
	if (c->session_timeout <= c->ping_interval) {
		config_fail_across(&cx, "mirror.idle_timeout",
		    offsetof(struct config, session_timeout),
		    offsetof(struct config, ping_interval),
		    "must be greater than primary.ping_interval (%u)",
		    (unsigned)c->ping_interval);
		goto out;
	}
	if (!(cx.cx_seen & KEY_SEEN_NBD))
		snprintf(c->nbd_socket, sizeof(c->nbd_socket),
		    "/run/duet/%s.nbd", c->vol_name);
	if (!(cx.cx_seen & KEY_SEEN_STATUS))
		snprintf(c->status_socket, sizeof(c->status_socket),
		    "/run/duet/%s.status", c->vol_name);

	memcpy(cfg, c, sizeof(*cfg));
	rc = 0;
out:
	saved = errno;
	config_destroy(&lc);
	free(c);
	free(text);
	errno = saved;
	return rc;
}

void
config_diff(const struct config *a, const struct config *b,
    void (*cb)(void *arg, const char *key, int live), void *arg)
{
	char key[64];
	size_t i, j;

	for (i = 0; i < CONFIG_NSECTIONS; i++) {
		const struct config_section *s = &config_sections[i];

		for (j = 0; j < s->s_nkeys; j++) {
			const struct config_key *k = &s->s_keys[j];

			if (memcmp((const char *)a + k->k_off,
			    (const char *)b + k->k_off, k->k_size) == 0)
				continue;
			snprintf(key, sizeof(key), "%s.%s", s->s_name,
			    k->k_name);
			cb(arg, key, (k->k_flags & KEY_LIVE) != 0);
		}
	}
}

int
config_take_live(struct config *cur, const struct config *next)
{
	size_t i, j;
	int n = 0;

	for (i = 0; i < CONFIG_NSECTIONS; i++) {
		const struct config_section *s = &config_sections[i];

		for (j = 0; j < s->s_nkeys; j++) {
			const struct config_key *k = &s->s_keys[j];

			if (!(k->k_flags & KEY_LIVE) ||
			    memcmp((const char *)cur + k->k_off,
			    (const char *)next + k->k_off, k->k_size) == 0)
				continue;
			memcpy((char *)cur + k->k_off,
			    (const char *)next + k->k_off, k->k_size);
			n++;
		}
	}
	return n;
}
