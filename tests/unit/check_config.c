/*
 * check_config.c: config_load() against the DESIGN.md example, the
 * defaults, config_parse_size() and every class of error, with the exact
 * "FILE:LINE: key: reason" text an operator would see. Each test writes its
 * file into a fresh mkdtemp() directory (checked fixture).
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"

#define K (UINT64_C(1) << 10)
#define M (UINT64_C(1) << 20)
#define G (UINT64_C(1) << 30)
#define T (UINT64_C(1) << 40)

static char tdir[64];
static char tpath[128];

static void
setup(void)
{
	snprintf(tdir, sizeof(tdir), "/tmp/check_config.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	snprintf(tpath, sizeof(tpath), "%s/vol.conf", tdir);
}

static void
teardown(void)
{
	char sub[160];

	unlink(tpath);
	snprintf(sub, sizeof(sub), "%s/dir", tdir);
	rmdir(sub);
	rmdir(tdir);
}

/* Writes text to tpath and returns tpath. */
static const char *
conf_write(const char *text)
{
	FILE *f = fopen(tpath, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
	return tpath;
}

/* Loads text and requires failure with exactly fmt (%s = the file's path). */
static void
expect_err(const char *text, const char *fmt, int prefix_only)
{
	struct config cfg;
	char err[1024], want[1024];

	snprintf(want, sizeof(want), fmt, tpath);
	ck_assert_int_eq(config_load(conf_write(text), &cfg, err, sizeof(err)),
	    -1);
	if (prefix_only)
		ck_assert_msg(strncmp(err, want, strlen(want)) == 0,
		    "got \"%s\", want a prefix \"%s\"", err, want);
	else
		ck_assert_str_eq(err, want);
}

static void
load_ok(const char *text, struct config *cfg)
{
	char err[1024] = "";

	ck_assert_msg(config_load(conf_write(text), cfg, err, sizeof(err)) == 0,
	    "config_load: %s", err);
	ck_assert_str_eq(err, "");
}

/* One-line sections, so the line of the section under test is plain. */
#define VOL_OK	"volume = { name = \"v\"; path = \"/p\"; size = \"1G\"; " \
		"metadata = \"/m\"; };\n"
#define TLS_OK	"tls = { ca = \"a\"; cert = \"b\"; key = \"c\"; " \
		"peer_name = \"p\"; };\n"

static const char design_example[] =
	"volume = {\n"
	"  name = \"vol0\";\n"
	"  path = \"/var/lib/duet/vol0.img\";      # file or block device\n"
	"  size = \"20G\";                          # files: created sparse if missing\n"
	"  metadata = \"/var/lib/duet/vol0.meta\";\n"
	"  extent_size = \"64K\";\n"
	"};\n"
	"primary = {\n"
	"  nbd_socket = \"/run/duet/vol0.nbd\";     # NBD over a Unix socket\n"
	"  nbd_listen = \"\";                       # optional \"127.0.0.1:10809\"\n"
	"  mirror = \"mirror-host:7790\";\n"
	"  mode = \"sync\";                         # sync | memsync | async\n"
	"  max_inflight = 1024;\n"
	"  max_inflight_bytes = \"64M\";\n"
	"};\n"
	"mirror = {\n"
	"  listen = \"0.0.0.0:7790\";\n"
	"  task_groups = 4;\n"
	"  tasks_per_group = 4;\n"
	"  range_size = \"256M\";\n"
	"  inline_us = 50;\n"
	"  poll_us = 20;\n"
	"};\n"
	"tls = {\n"
	"  ca = \"/etc/duet/ca.pem\";\n"
	"  cert = \"/etc/duet/host.pem\";\n"
	"  key = \"/etc/duet/host.key\";\n"
	"  peer_name = \"mirror-host\";             # the name the peer's certificate must carry\n"
	"};\n"
	"status = {\n"
	"  socket = \"/run/duet/vol0.status\";\n"
	"  group = \"duet\";\n"
	"};\n";

/* ---- Core ---- */

START_TEST(test_design_example)
{
	struct config cfg;

	load_ok(design_example, &cfg);
	ck_assert_str_eq(cfg.path, tpath);
	ck_assert_str_eq(cfg.vol_name, "vol0");
	ck_assert_str_eq(cfg.vol_path, "/var/lib/duet/vol0.img");
	ck_assert_uint_eq(cfg.vol_size, 20 * G);
	ck_assert_str_eq(cfg.vol_metadata, "/var/lib/duet/vol0.meta");
	ck_assert_uint_eq(cfg.extent_size, 64 * K);
	ck_assert_str_eq(cfg.nbd_socket, "/run/duet/vol0.nbd");
	ck_assert_str_eq(cfg.nbd_listen, "");
	ck_assert_str_eq(cfg.mirror_addr, "mirror-host:7790");
	ck_assert_int_eq(cfg.mode, MODE_SYNC);
	ck_assert_uint_eq(cfg.max_inflight, 1024);
	ck_assert_uint_eq(cfg.max_inflight_bytes, 64 * M);
	ck_assert_str_eq(cfg.listen, "0.0.0.0:7790");
	ck_assert_uint_eq(cfg.task_groups, 4);
	ck_assert_uint_eq(cfg.tasks_per_group, 4);
	ck_assert_uint_eq(cfg.range_size, 256 * M);
	ck_assert_uint_eq(cfg.inline_us, 50);
	ck_assert_uint_eq(cfg.poll_us, 20);
	ck_assert_str_eq(cfg.tls_ca, "/etc/duet/ca.pem");
	ck_assert_str_eq(cfg.tls_cert, "/etc/duet/host.pem");
	ck_assert_str_eq(cfg.tls_key, "/etc/duet/host.key");
	ck_assert_str_eq(cfg.tls_peer_name, "mirror-host");
	ck_assert_str_eq(cfg.status_socket, "/run/duet/vol0.status");
	ck_assert_str_eq(cfg.status_group, "duet");
}
END_TEST

START_TEST(test_defaults)
{
	struct config cfg;

	load_ok("volume = {\n  name = \"db-1.x_y\";\n  path = \"/dev/vdb\";\n"
	    "  size = 1073741824;\n  metadata = \"/var/lib/duet/db.meta\";\n"
	    "};\n" TLS_OK, &cfg);
	ck_assert_str_eq(cfg.vol_name, "db-1.x_y");
	ck_assert_str_eq(cfg.vol_path, "/dev/vdb");
	ck_assert_uint_eq(cfg.vol_size, 1 * G);
	ck_assert_uint_eq(cfg.extent_size, 64 * K);
	ck_assert_str_eq(cfg.nbd_socket, "/run/duet/db-1.x_y.nbd");
	ck_assert_str_eq(cfg.nbd_listen, "");
	ck_assert_str_eq(cfg.mirror_addr, "");
	ck_assert_int_eq(cfg.mode, MODE_SYNC);
	ck_assert_uint_eq(cfg.max_inflight, 1024);
	ck_assert_uint_eq(cfg.max_inflight_bytes, 64 * M);
	ck_assert_uint_eq(cfg.max_clients, 64);
	ck_assert_uint_eq(cfg.al_extents, 1024);
	ck_assert_uint_eq(cfg.resync_rate, 0);
	ck_assert_int_eq(cfg.resync_checksums, 0);
	ck_assert_str_eq(cfg.listen, "0.0.0.0:7790");
	ck_assert_uint_eq(cfg.task_groups, 4);
	ck_assert_uint_eq(cfg.tasks_per_group, 4);
	ck_assert_uint_eq(cfg.range_size, 256 * M);
	ck_assert_uint_eq(cfg.inline_us, 50);
	ck_assert_uint_eq(cfg.poll_us, 400);
	ck_assert_uint_eq(cfg.ping_interval, 5);
	ck_assert_uint_eq(cfg.idle_timeout, 15);
	ck_assert_uint_eq(cfg.connect_timeout, 10);
	ck_assert_uint_eq(cfg.congestion_timeout, 10);
	ck_assert_uint_eq(cfg.reconnect_max, 30);
	ck_assert_uint_eq(cfg.stop_timeout, 30);
	ck_assert_uint_eq(cfg.session_timeout, 30);
	ck_assert_uint_eq(cfg.hello_timeout, 10);
	ck_assert_str_eq(cfg.tls_ca, "a");
	ck_assert_str_eq(cfg.tls_peer_name, "p");
	ck_assert_str_eq(cfg.status_socket, "/run/duet/db-1.x_y.status");
	ck_assert_str_eq(cfg.status_group, "");
}
END_TEST

START_TEST(test_timers)
{
	struct config cfg;

	load_ok(VOL_OK "primary = {\n  ping_interval = 1;\n"
	    "  idle_timeout = 2;\n  connect_timeout = 3;\n"
	    "  congestion_timeout = 86400;\n  reconnect_max = 3600;\n"
	    "  stop_timeout = 1;\n};\n"
	    "mirror = {\n  idle_timeout = 7;\n  hello_timeout = 3600;\n};\n"
	    TLS_OK, &cfg);	/* > ping 1 */
	ck_assert_uint_eq(cfg.ping_interval, 1);
	ck_assert_uint_eq(cfg.idle_timeout, 2);
	ck_assert_uint_eq(cfg.connect_timeout, 3);
	ck_assert_uint_eq(cfg.congestion_timeout, 86400);
	ck_assert_uint_eq(cfg.reconnect_max, 3600);
	ck_assert_uint_eq(cfg.stop_timeout, 1);
	ck_assert_uint_eq(cfg.session_timeout, 7);
	ck_assert_uint_eq(cfg.hello_timeout, 3600);
}
END_TEST

/* Empty optional sections are allowed and also give the defaults. */
START_TEST(test_empty_sections)
{
	struct config cfg;

	load_ok(VOL_OK "primary = { };\nmirror = { };\nstatus = { };\n"
	    TLS_OK, &cfg);
	ck_assert_str_eq(cfg.nbd_socket, "/run/duet/v.nbd");
	ck_assert_str_eq(cfg.listen, "0.0.0.0:7790");
	ck_assert_str_eq(cfg.status_socket, "/run/duet/v.status");
}
END_TEST

START_TEST(test_example_file)
{
	struct config cfg;
	char err[1024] = "";

	ck_assert_msg(config_load("conf/duet.conf.example", &cfg, err,
	    sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(cfg.vol_name, "vol0");
	ck_assert_uint_eq(cfg.vol_size, 20 * G);
	ck_assert_str_eq(cfg.mirror_addr, "mirror-host:7790");
	ck_assert_str_eq(cfg.tls_peer_name, "mirror-host");
	ck_assert_str_eq(cfg.status_group, "duet");
}
END_TEST

START_TEST(test_values)
{
	struct config cfg;

	load_ok("volume = { name = \"v\"; path = \"/p\"; size = 21474836480L;\n"
	    "  metadata = \"/m\"; extent_size = 1048576; };\n"
	    "primary = { mode = \"memsync\"; nbd_listen = \"127.0.0.1:10809\";\n"
	    "  mirror = \"[fe80::1%eth0]:7790\"; max_inflight = 65536;\n"
	    "  resync_rate = \"50M\"; resync_checksums = true;\n"
	    "  max_inflight_bytes = 1048576; nbd_socket = \"rel.sock\"; };\n"
	    "mirror = { listen = \"[::]:1\"; task_groups = 256;\n"
	    "  tasks_per_group = 1; range_size = \"1m\"; inline_us = 0; };\n"
	    "status = { socket = \"/tmp/s\"; group = \"\"; };\n" TLS_OK, &cfg);
	ck_assert_uint_eq(cfg.vol_size, 20 * G);
	ck_assert_uint_eq(cfg.extent_size, 1 * M);
	ck_assert_int_eq(cfg.mode, MODE_MEMSYNC);
	ck_assert_str_eq(cfg.nbd_listen, "127.0.0.1:10809");
	ck_assert_str_eq(cfg.mirror_addr, "[fe80::1%eth0]:7790");
	ck_assert_uint_eq(cfg.max_inflight, 65536);
	ck_assert_uint_eq(cfg.resync_rate, 50 * M);
	ck_assert_int_eq(cfg.resync_checksums, 1);
	ck_assert_uint_eq(cfg.max_inflight_bytes, 1 * M);
	ck_assert_str_eq(cfg.nbd_socket, "rel.sock");
	ck_assert_str_eq(cfg.listen, "[::]:1");
	ck_assert_uint_eq(cfg.task_groups, 256);
	ck_assert_uint_eq(cfg.tasks_per_group, 1);
	ck_assert_uint_eq(cfg.range_size, 1 * M);
	ck_assert_uint_eq(cfg.inline_us, 0);
	ck_assert_str_eq(cfg.status_socket, "/tmp/s");

	load_ok(VOL_OK "primary = { mode = \"async\"; };\n" TLS_OK, &cfg);
	ck_assert_int_eq(cfg.mode, MODE_ASYNC);
}
END_TEST

START_TEST(test_mode_name)
{
	ck_assert_str_eq(config_mode_name(MODE_SYNC), "sync");
	ck_assert_str_eq(config_mode_name(MODE_MEMSYNC), "memsync");
	ck_assert_str_eq(config_mode_name(MODE_ASYNC), "async");
}
END_TEST

/* A failed load leaves the caller's config as it was (SIGHUP reload). */
START_TEST(test_failure_keeps_cfg)
{
	struct config cfg, copy;
	char err[256];

	memset(&cfg, 0xa5, sizeof(cfg));
	memcpy(&copy, &cfg, sizeof(cfg));
	ck_assert_int_eq(config_load(conf_write(VOL_OK TLS_OK
	    "mirror = { task_groups = 0; };\n"), &cfg, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(memcmp(&cfg, &copy, sizeof(cfg)), 0);
	/* and a NULL or tiny err buffer is fine */
	ck_assert_int_eq(config_load(tpath, &cfg, NULL, 0), -1);
	ck_assert_int_eq(config_load(tpath, &cfg, err, 5), -1);
	ck_assert_str_eq(err, "/tmp");
}
END_TEST

struct diffs {
	char	keys[8][64];
	int	live[8];
	int	n;
};

static void
diff_cb(void *arg, const char *key, int live)
{
	struct diffs *d = arg;

	ck_assert_int_lt(d->n, 8);
	snprintf(d->keys[d->n], sizeof(d->keys[0]), "%s", key);
	d->live[d->n++] = live;
}

/* SIGHUP: the timers and the resync keys change live, the rest do not. */
START_TEST(test_diff_and_live)
{
	struct config cur, next;
	struct diffs d = { .n = 0 };

	load_ok(VOL_OK TLS_OK, &cur);
	load_ok(VOL_OK TLS_OK "primary = {\n  resync_rate = \"10M\";\n"
	    "  idle_timeout = 60;\n  max_inflight = 8;\n};\n"
	    "mirror = {\n  idle_timeout = 9;\n  task_groups = 2;\n};\n",
	    &next);
	config_diff(&cur, &next, diff_cb, &d);
	ck_assert_int_eq(d.n, 5);
	ck_assert_str_eq(d.keys[0], "primary.max_inflight");
	ck_assert_int_eq(d.live[0], 0);
	ck_assert_str_eq(d.keys[1], "primary.resync_rate");
	ck_assert_int_eq(d.live[1], 1);
	ck_assert_str_eq(d.keys[2], "primary.idle_timeout");
	ck_assert_int_eq(d.live[2], 1);
	ck_assert_str_eq(d.keys[3], "mirror.task_groups");
	ck_assert_int_eq(d.live[3], 0);
	ck_assert_str_eq(d.keys[4], "mirror.idle_timeout");
	ck_assert_int_eq(d.live[4], 1);

	ck_assert_int_eq(config_take_live(&cur, &next), 3);
	ck_assert_uint_eq(cur.resync_rate, 10 * M);
	ck_assert_uint_eq(cur.idle_timeout, 60);
	ck_assert_uint_eq(cur.session_timeout, 9);
	ck_assert_uint_eq(cur.max_inflight, 1024);	/* not live */
	ck_assert_uint_eq(cur.task_groups, 4);
	ck_assert_int_eq(config_take_live(&cur, &next), 0);
}
END_TEST

static const struct {
	const char *in, *host, *port;	/* host NULL: must be refused */
} hostports[] = {
	{ "0.0.0.0:7790", "0.0.0.0", "7790" },
	{ "mirror-host:1", "mirror-host", "1" },
	{ "h:65535", "h", "65535" },
	{ "h:0080", "h", "80" },
	{ "[::1]:7790", "::1", "7790" },
	{ "[::]:10809", "::", "10809" },
	{ "[fe80::1%eth0]:7", "fe80::1%eth0", "7" },
	{ "", NULL, NULL },
	{ "host", NULL, NULL },
	{ "host:", NULL, NULL },
	{ ":7790", NULL, NULL },
	{ "host:0", NULL, NULL },
	{ "host:65536", NULL, NULL },
	{ "host:99999999999999999999", NULL, NULL },
	{ "host:-1", NULL, NULL },
	{ "host:+80", NULL, NULL },
	{ "host:80x", NULL, NULL },
	{ "host:http", NULL, NULL },
	{ "host:80:81", NULL, NULL },
	{ "::1:7790", NULL, NULL },
	{ "[::1]7790", NULL, NULL },
	{ "[::1]:", NULL, NULL },
	{ "[]:7790", NULL, NULL },
	{ "[::1:7790", NULL, NULL },
	{ "a]:1", NULL, NULL },
	{ "my host:1", NULL, NULL },
	{ " host:1", NULL, NULL },
	{ "host:1 ", NULL, NULL },
};

START_TEST(test_hostport)
{
	char host[64], port[8];
	int rc = config_split_hostport(hostports[_i].in, host, sizeof(host),
	    port, sizeof(port));

	if (hostports[_i].host == NULL) {
		ck_assert_msg(rc == -1, "\"%s\" accepted", hostports[_i].in);
		ck_assert_int_eq(errno, EINVAL);
		return;
	}
	ck_assert_msg(rc == 0, "\"%s\" refused", hostports[_i].in);
	ck_assert_str_eq(host, hostports[_i].host);
	ck_assert_str_eq(port, hostports[_i].port);
	ck_assert_int_eq(config_split_hostport(hostports[_i].in, NULL, 0,
	    NULL, 0), 0);
}
END_TEST

START_TEST(test_hostport_short_buffers)
{
	char host[4], port[6];

	ck_assert_int_eq(config_split_hostport("abc:1", host, sizeof(host),
	    port, sizeof(port)), 0);
	ck_assert_str_eq(host, "abc");
	ck_assert_int_eq(config_split_hostport("abcd:1", host, sizeof(host),
	    port, sizeof(port)), -1);
	ck_assert_int_eq(errno, ENAMETOOLONG);
	ck_assert_int_eq(config_split_hostport("a:65535", host, sizeof(host),
	    port, 5), -1);
	ck_assert_int_eq(errno, ENAMETOOLONG);
}
END_TEST

/* ---- Sizes ---- */

static const struct {
	const char *in;
	int ok;
	uint64_t want;
} sizes[] = {
	{ "512", 1, 512 },
	{ "0", 1, 0 },
	{ "4096", 1, 4096 },
	{ "64K", 1, 64 * K },
	{ "64k", 1, 64 * K },
	{ "256M", 1, 256 * M },
	{ "256m", 1, 256 * M },
	{ "20G", 1, 20 * G },
	{ "20g", 1, 20 * G },
	{ "1T", 1, T },
	{ "1t", 1, T },
	{ "0K", 1, 0 },
	{ "007", 1, 7 },
	{ "18446744073709551615", 1, UINT64_MAX },
	{ "16777215T", 1, 16777215 * T },
	{ "", 0, 0 },
	{ "20Q", 0, 0 },
	{ "-1", 0, 0 },
	{ "+1", 0, 0 },
	{ "1.5G", 0, 0 },
	{ "G", 0, 0 },
	{ "K", 0, 0 },
	{ "99999999999T", 0, 0 },
	{ "16777216T", 0, 0 },
	{ "18446744073709551616", 0, 0 },
	{ "99999999999999999999999", 0, 0 },
	{ "20GB", 0, 0 },
	{ "20KK", 0, 0 },
	{ " 20G", 0, 0 },
	{ "20G ", 0, 0 },
	{ "20 G", 0, 0 },
	{ "0x10", 0, 0 },
	{ "1e3", 0, 0 },
	{ "20P", 0, 0 },
};

START_TEST(test_parse_size)
{
	uint64_t v = 12345;
	int rc = config_parse_size(sizes[_i].in, &v);

	if (!sizes[_i].ok) {
		ck_assert_msg(rc == -1, "\"%s\" accepted as %ju", sizes[_i].in,
		    (uintmax_t)v);
		ck_assert_uint_eq(v, 12345);
		return;
	}
	ck_assert_msg(rc == 0, "\"%s\" refused", sizes[_i].in);
	ck_assert_uint_eq(v, sizes[_i].want);
}
END_TEST

START_TEST(test_size_null)
{
	uint64_t v;

	ck_assert_int_eq(config_parse_size(NULL, &v), -1);
}
END_TEST

/* Sizes in the file: syntax, type and each key's range. */
static const struct {
	const char *text, *want;
} size_errors[] = {
	{ "volume = {\n  name = \"v\";\n  path = \"/p\";\n  size = \"20Q\";\n};\n",
	  "%s:4: volume.size: bad size \"20Q\" (use a number with K, M, G or T)" },
	{ "volume = {\n  size = \"1.5G\";\n};\n",
	  "%s:2: volume.size: bad size \"1.5G\" (use a number with K, M, G or T)" },
	{ "volume = {\n  size = \"\";\n};\n",
	  "%s:2: volume.size: bad size \"\" (use a number with K, M, G or T)" },
	{ "volume = {\n  size = \"99999999999T\";\n};\n",
	  "%s:2: volume.size: bad size \"99999999999T\" (use a number with K, M, G or T)" },
	{ "volume = {\n  size = -1;\n};\n",
	  "%s:2: volume.size: bad size -1 (must not be negative)" },
	{ "volume = {\n  size = 1.5;\n};\n",
	  "%s:2: volume.size: expected a size (an integer or a string such as \"64K\")" },
	{ "volume = {\n  size = true;\n};\n",
	  "%s:2: volume.size: expected a size (an integer or a string such as \"64K\")" },
	{ "volume = {\n  size = 0;\n};\n",
	  "%s:2: volume.size: must be > 0 and a multiple of 4096 (at most 8388607T)" },
	{ "volume = {\n  size = 4097;\n};\n",
	  "%s:2: volume.size: must be > 0 and a multiple of 4096 (at most 8388607T)" },
	{ "volume = {\n  size = \"8388608T\";\n};\n",
	  "%s:2: volume.size: must be > 0 and a multiple of 4096 (at most 8388607T)" },
	/* libconfig 1.5 would store these as 0 and 4096 */
	{ "volume = {\n  size = 21474836480;\n};\n",
	  "%s:2: volume.size: integer too large for libconfig: add an L suffix or write it as a string" },
	{ "volume = { name = \"v\"; size = 4294971392; };\n",
	  "%s:1: volume.size: integer too large for libconfig: add an L suffix or write it as a string" },
	{ "volume = {\n  extent_size = \"2K\";\n};\n",
	  "%s:2: volume.extent_size: must be a power of two, 4K..4M" },
	{ "volume = {\n  extent_size = \"8M\";\n};\n",
	  "%s:2: volume.extent_size: must be a power of two, 4K..4M" },
	{ "volume = {\n  extent_size = \"96K\";\n};\n",
	  "%s:2: volume.extent_size: must be a power of two, 4K..4M" },
	{ VOL_OK "primary = {\n  max_inflight_bytes = \"1023K\";\n};\n",
	  "%s:3: primary.max_inflight_bytes: must be at least 1M" },
	{ VOL_OK "primary = {\n  max_clients = 0;\n};\n",
	  "%s:3: primary.max_clients: must be 1..4096" },
	{ VOL_OK "primary = {\n  max_clients = 4097;\n};\n",
	  "%s:3: primary.max_clients: must be 1..4096" },
	{ VOL_OK "mirror = {\n  range_size = \"32K\";\n};\n",
	  "%s:3: mirror.range_size: must be a power of two, at least 64K" },
	{ VOL_OK "mirror = {\n  inline_us = 1000001;\n};\n",
	  "%s:3: mirror.inline_us: must be 0..1000000 (microseconds)" },
	{ VOL_OK "mirror = {\n  poll_us = 1001;\n};\n",
	  "%s:3: mirror.poll_us: must be 0..1000 (microseconds)" },
	{ VOL_OK "primary = {\n  ping_interval = 0;\n};\n",
	  "%s:3: primary.ping_interval: must be 1..3600 (seconds)" },
	{ VOL_OK "primary = {\n  idle_timeout = 1;\n};\n",
	  "%s:3: primary.idle_timeout: must be 2..86400 (seconds)" },
	{ VOL_OK "primary = {\n  connect_timeout = 3601;\n};\n",
	  "%s:3: primary.connect_timeout: must be 1..3600 (seconds)" },
	{ VOL_OK "primary = {\n  congestion_timeout = 0;\n};\n",
	  "%s:3: primary.congestion_timeout: must be 1..86400 (seconds)" },
	{ VOL_OK "primary = {\n  reconnect_max = 3601;\n};\n",
	  "%s:3: primary.reconnect_max: must be 1..3600 (seconds)" },
	{ VOL_OK "primary = {\n  stop_timeout = 0;\n};\n",
	  "%s:3: primary.stop_timeout: must be 1..3600 (seconds)" },
	{ VOL_OK "mirror = {\n  idle_timeout = 86401;\n};\n",
	  "%s:3: mirror.idle_timeout: must be 2..86400 (seconds)" },
	{ VOL_OK "mirror = {\n  hello_timeout = 3601;\n};\n",
	  "%s:3: mirror.hello_timeout: must be 1..3600 (seconds)" },
	/* an idle link pings: it must not time out first */
	{ VOL_OK TLS_OK "primary = {\n  idle_timeout = 5;\n};\n",
	  "%s:4: primary.idle_timeout: must be greater than primary.ping_interval (5)" },
	{ VOL_OK TLS_OK "primary = {\n  ping_interval = 20;\n};\n",
	  "%s:4: primary.idle_timeout: must be greater than primary.ping_interval (20)" },
	{ VOL_OK TLS_OK "primary = {\n  ping_interval = 9;\n  idle_timeout = 9;\n};\n",
	  "%s:5: primary.idle_timeout: must be greater than primary.ping_interval (9)" },
	{ VOL_OK TLS_OK "mirror = {\n  idle_timeout = 5;\n};\n",
	  "%s:4: mirror.idle_timeout: must be greater than primary.ping_interval (5)" },
	{ VOL_OK TLS_OK "primary = {\n  ping_interval = 30;\n  idle_timeout = 60;\n};\n",
	  "%s:4: mirror.idle_timeout: must be greater than primary.ping_interval (30)" },
	{ VOL_OK "mirror = {\n  range_size = \"384M\";\n};\n",
	  "%s:3: mirror.range_size: must be a power of two, at least 64K" },
	{ "volume = { name = \"v\"; path = \"/p\"; size = \"1G\";\n"
	  "  metadata = \"/m\"; extent_size = \"1M\"; };\n" TLS_OK
	  "mirror = {\n  range_size = \"512K\";\n};\n",
	  "%s:5: mirror.range_size: must be at least volume.extent_size (1048576)" },
};

START_TEST(test_size_errors)
{
	expect_err(size_errors[_i].text, size_errors[_i].want, 0);
}
END_TEST

/* ---- Errors ---- */

START_TEST(test_missing_file)
{
	struct config cfg;
	char err[1024], want[1024];

	snprintf(want, sizeof(want), "%s/nope.conf: cannot read: %s", tdir,
	    strerror(ENOENT));
	snprintf(tpath, sizeof(tpath), "%s/nope.conf", tdir);
	ck_assert_int_eq(config_load(tpath, &cfg, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_directory)
{
	struct config cfg;
	char err[1024], want[1024], dir[160];

	snprintf(dir, sizeof(dir), "%s/dir", tdir);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(want, sizeof(want), "%s: cannot read: %s", dir,
	    strerror(EISDIR));
	ck_assert_int_eq(config_load(dir, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_unreadable)
{
	struct config cfg;
	char err[1024], want[1024];

	if (geteuid() == 0)
		return;		/* root reads anything */
	conf_write(VOL_OK TLS_OK);
	ck_assert_int_eq(chmod(tpath, 0), 0);
	snprintf(want, sizeof(want), "%s: cannot read: %s", tpath,
	    strerror(EACCES));
	ck_assert_int_eq(config_load(tpath, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_nul_byte)
{
	struct config cfg;
	char err[1024], want[1024];
	FILE *f = fopen(tpath, "w");

	ck_assert_ptr_nonnull(f);
	fwrite(VOL_OK "\0" TLS_OK, 1, sizeof(VOL_OK TLS_OK), f);
	fclose(f);
	snprintf(want, sizeof(want), "%s: not a text file (contains a NUL byte)", tpath);
	ck_assert_int_eq(config_load(tpath, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, want);
}
END_TEST

static char long_name[128], long_path[4200], long_sock[256];

static const struct {
	const char *text, *want;
	int prefix;	/* libconfig's own text follows */
} errors[] = {
	/* unknown keys and sections */
	{ "volume = {\n  name = \"v\";\n  path = \"/p\";\n  colour = \"red\";\n};\n",
	  "%s:4: volume.colour: unknown key", 0 },
	{ VOL_OK TLS_OK "\n\nmirror = {\n  listen = \"h:1\";\n  task_group = 4;\n};\n",
	  "%s:7: mirror.task_group: unknown key", 0 },
	{ VOL_OK "colour = {\n  x = 1;\n};\n",
	  "%s:2: colour: unknown section", 0 },
	{ VOL_OK TLS_OK "debug = true;\n",
	  "%s:3: debug: unknown section", 0 },
	{ VOL_OK "tls = \"x\";\n",
	  "%s:2: tls: expected a group: tls = { ... };", 0 },
	{ VOL_OK "mirror = (1, 2);\n",
	  "%s:2: mirror: expected a group: mirror = { ... };", 0 },
	/* wrong types */
	{ VOL_OK TLS_OK "mirror = {\n  task_groups = \"four\";\n};\n",
	  "%s:4: mirror.task_groups: expected an integer", 0 },
	{ VOL_OK TLS_OK "mirror = {\n  tasks_per_group = 4.0;\n};\n",
	  "%s:4: mirror.tasks_per_group: expected an integer", 0 },
	{ VOL_OK "primary = {\n  max_inflight = \"1024\";\n};\n",
	  "%s:3: primary.max_inflight: expected an integer", 0 },
	{ VOL_OK "primary = {\n  mode = 3;\n};\n",
	  "%s:3: primary.mode: expected a string", 0 },
	{ "volume = {\n  name = vol0;\n};\n",
	  "%s:2: syntax error", 1 },
	{ "volume = {\n  name = 7;\n};\n",
	  "%s:2: volume.name: expected a string", 0 },
	{ VOL_OK "tls = {\n  ca = [\"a\", \"b\"];\n};\n",
	  "%s:3: tls.ca: expected a string", 0 },
	{ VOL_OK "status = {\n  group = 100;\n};\n",
	  "%s:3: status.group: expected a string", 0 },
	{ VOL_OK "primary = {\n  sub = { mode = \"sync\"; };\n};\n",
	  "%s:3: primary.sub: unknown key", 0 },
	/* missing files are in test_missing_file; syntax */
	{ "volume = {\n  name = \"v\";\n  path = ;\n};\n",
	  "%s:3: syntax error", 1 },
	{ "volume = {\n  name = \"v;\n};\n",
	  "%s:", 1 },
	{ "volume = {\n  name = \"v\";\n  name = \"w\";\n};\n",
	  "%s:3: syntax error: duplicate setting name", 0 },
	{ VOL_OK TLS_OK "status = {\n  socket = \"/s\";\n",
	  "%s:5: syntax error", 1 },
	/* missing required keys and sections */
	{ "\n\nvolume = {\n  name = \"v\";\n  size = \"1G\";\n"
	  "  metadata = \"/m\";\n};\n" TLS_OK,
	  "%s:3: volume.path: missing (required)", 0 },
	{ VOL_OK "\ntls = {\n  ca = \"a\";\n  cert = \"b\";\n  key = \"c\";\n};\n",
	  "%s:3: tls.peer_name: missing (required)", 0 },
	{ VOL_OK, "%s: tls: missing (required)", 0 },
	{ TLS_OK, "%s: volume: missing (required)", 0 },
	{ "", "%s: volume: missing (required)", 0 },
	{ "# nothing but a comment\n", "%s: volume: missing (required)", 0 },
	/* out of range */
	{ VOL_OK TLS_OK "mirror = {\n  task_groups = 0;\n};\n",
	  "%s:4: mirror.task_groups: must be 1..256", 0 },
	{ VOL_OK TLS_OK "mirror = {\n  task_groups = 257;\n};\n",
	  "%s:4: mirror.task_groups: must be 1..256", 0 },
	{ VOL_OK TLS_OK "mirror = {\n  tasks_per_group = -4;\n};\n",
	  "%s:4: mirror.tasks_per_group: must be 1..256", 0 },
	{ VOL_OK TLS_OK "mirror = {\n  tasks_per_group = 4294967297L;\n};\n",
	  "%s:4: mirror.tasks_per_group: must be 1..256", 0 },
	{ VOL_OK TLS_OK "mirror = {\n  task_groups = 4294967297;\n};\n",
	  "%s:4: mirror.task_groups: integer too large for libconfig: add an L suffix or write it as a string", 0 },
	{ VOL_OK TLS_OK "mirror = {\n  task_groups = 0xFFFFFFFF;\n};\n",
	  "%s:4: mirror.task_groups: integer too large for libconfig: add an L suffix or write it as a string", 0 },
	{ VOL_OK "primary = {\n  max_inflight = 0;\n};\n",
	  "%s:3: primary.max_inflight: must be 1..65536", 0 },
	{ VOL_OK "primary = {\n  resync_checksums = 1;\n};\n",
	  "%s:3: primary.resync_checksums: expected true or false", 0 },
	{ VOL_OK "primary = {\n  resync_rate = \"fast\";\n};\n",
	  "%s:3: primary.resync_rate: bad size \"fast\" (use a number with K, M, G or T)", 0 },
	{ "volume = {\n  name = \"v\";\n  al_extents = 1537;\n};\n",
	  "%s:3: volume.al_extents: must be 1..1536", 0 },
	{ "volume = {\n  name = \"v\";\n  al_extents = 0;\n};\n",
	  "%s:3: volume.al_extents: must be 1..1536", 0 },
	{ VOL_OK "primary = {\n  max_inflight = 65537;\n};\n",
	  "%s:3: primary.max_inflight: must be 1..65536", 0 },
	{ VOL_OK "primary = {\n  mode = \"fast\";\n};\n",
	  "%s:3: primary.mode: must be sync, memsync or async", 0 },
	{ VOL_OK "primary = {\n  mode = \"SYNC\";\n};\n",
	  "%s:3: primary.mode: must be sync, memsync or async", 0 },
	/* names, strings, addresses */
	{ "volume = {\n  name = \"vol 0\";\n};\n",
	  "%s:2: volume.name: must match [A-Za-z0-9._-]{1,63}", 0 },
	{ "volume = {\n  name = \"../x\";\n};\n",
	  "%s:2: volume.name: must match [A-Za-z0-9._-]{1,63}", 0 },
	{ "volume = {\n  name = \"\";\n};\n",
	  "%s:2: volume.name: must not be empty", 0 },
	{ "volume = {\n  name = \"v\";\n  path = \"\";\n};\n",
	  "%s:3: volume.path: must not be empty", 0 },
	{ VOL_OK "tls = {\n  peer_name = \"\";\n};\n",
	  "%s:3: tls.peer_name: must not be empty", 0 },
	{ VOL_OK "mirror = {\n  listen = \"0.0.0.0\";\n};\n",
	  "%s:3: mirror.listen: must be host:port (port 1..65535, [v6]:port for IPv6), not \"0.0.0.0\"", 0 },
	{ VOL_OK "mirror = {\n  listen = \"\";\n};\n",
	  "%s:3: mirror.listen: must not be empty", 0 },
	{ VOL_OK "primary = {\n  mirror = \"mirror-host:0\";\n};\n",
	  "%s:3: primary.mirror: must be host:port (port 1..65535, [v6]:port for IPv6), not \"mirror-host:0\"", 0 },
	{ VOL_OK "primary = {\n  nbd_listen = \"::1:10809\";\n};\n",
	  "%s:3: primary.nbd_listen: must be host:port (port 1..65535, [v6]:port for IPv6), not \"::1:10809\"", 0 },
	{ "volume = {\n  name = \"v\";\n  name2 = \"v\";\n};\n",
	  "%s:3: volume.name2: unknown key", 0 },
	/* filled in by errors_init(): too long */
	{ long_name, "%s:2: volume.name: too long (at most 63 bytes)", 0 },
	{ long_path, "%s:3: volume.path: too long (at most 4095 bytes)", 0 },
	{ long_sock, "%s:3: primary.nbd_socket: too long (at most 107 bytes)", 0 },
};

static void
errors_init(void)
{
	static char a[4096];

	memset(a, 'a', sizeof(a));
	snprintf(long_name, sizeof(long_name),
	    "volume = {\n  name = \"%.*s\";\n};\n", 64, a);
	snprintf(long_path, sizeof(long_path),
	    "volume = {\n  name = \"v\";\n  path = \"/%.*s\";\n};\n", 4095, a);
	snprintf(long_sock, sizeof(long_sock),
	    VOL_OK "primary = {\n  nbd_socket = \"%.*s\";\n};\n", 108, a);
}

START_TEST(test_errors)
{
	errors_init();
	expect_err(errors[_i].text, errors[_i].want, errors[_i].prefix);
}
END_TEST

/* Names and socket paths exactly at their limits still fit. */
START_TEST(test_limits_fit)
{
	struct config cfg;
	char text[1024], a[108];

	memset(a, 'a', sizeof(a));
	a[63] = '\0';
	snprintf(text, sizeof(text), "volume = { name = \"%s\"; path = \"/p\";"
	    " size = \"4K\"; metadata = \"/m\"; };\n" TLS_OK, a);
	load_ok(text, &cfg);
	ck_assert_uint_eq(strlen(cfg.vol_name), 63);
	ck_assert_uint_eq(cfg.vol_size, 4096);
	ck_assert_uint_eq(strlen(cfg.nbd_socket), 10 + 63 + 4);
	a[63] = 'a';
	a[107] = '\0';
	snprintf(text, sizeof(text), VOL_OK TLS_OK
	    "primary = { nbd_socket = \"%s\"; };\n"
	    "status = { socket = \"%s\"; };\n", a, a);
	load_ok(text, &cfg);
	ck_assert_uint_eq(strlen(cfg.nbd_socket), 107);
	ck_assert_uint_eq(strlen(cfg.status_socket), 107);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("Core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_design_example);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_timers);
	tcase_add_test(tc, test_diff_and_live);
	tcase_add_test(tc, test_empty_sections);
	tcase_add_test(tc, test_example_file);
	tcase_add_test(tc, test_values);
	tcase_add_test(tc, test_mode_name);
	tcase_add_test(tc, test_failure_keeps_cfg);
	tcase_add_loop_test(tc, test_hostport, 0,
	    sizeof(hostports) / sizeof(hostports[0]));
	tcase_add_test(tc, test_hostport_short_buffers);
	tcase_add_test(tc, test_limits_fit);
	suite_add_tcase(s, tc);

	tc = tcase_create("Sizes");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_parse_size, 0,
	    sizeof(sizes) / sizeof(sizes[0]));
	tcase_add_test(tc, test_size_null);
	tcase_add_loop_test(tc, test_size_errors, 0,
	    sizeof(size_errors) / sizeof(size_errors[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("Errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_directory);
	tcase_add_test(tc, test_unreadable);
	tcase_add_test(tc, test_nul_byte);
	tcase_add_loop_test(tc, test_errors, 0,
	    sizeof(errors) / sizeof(errors[0]));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
