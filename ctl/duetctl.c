/*
 * duetctl: asks a duet daemon over its status socket (duetctl(8)).
 *
 *   duetctl [-s SOCKET | -c FILE] status [--json]
 *   duetctl [-s SOCKET | -c FILE] metrics
 *   duetctl [-s SOCKET | -c FILE] wait-sync [--timeout S]
 *   duetctl [-s SOCKET | -c FILE] verify [--start OFFSET] [--stop OFFSET]
 *   duetctl [-s SOCKET | -c FILE] resync
 *   duetctl [-s SOCKET | -c FILE] resolve --discard-local
 *   duetctl [-s SOCKET | -c FILE] VERB [ARGS...]
 *
 * verify and resync (primary) and resolve (mirror) are answered by the
 * daemon; like any other VERB they go through cmd_other, which prints the
 * reply line, or the error and exit 2 on "ok": false.
 *
 * One request line, one JSON reply line (common/ctl.c). The reply is
 * parsed with jansson and only read here: the schema is the daemons'
 * (documented in duetctl.8), and a field this version does not know is
 * ignored, a missing one printed as "?", so duetctl and the daemons may
 * be upgraded apart.
 *
 * Exit codes: 0 healthy (or the verb succeeded), 1 degraded, 2 usage or
 * connection error (or the daemon said ok:false), 3 timeout.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>		/* isfinite, INFINITY: macros */
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/config.h"

#define EXIT_HEALTHY	0
#define EXIT_DEGRADED	1
#define EXIT_ERROR	2
#define EXIT_TIMEOUT	3

#define REQ_TIMEOUT_MS	10000		/* one request's reply */
#define REPLY_MAX	(16 * 1024 * 1024)
#define POLL_MS		200		/* wait-sync's polling interval */

static const char *sock_path;

static void __attribute__((noreturn))
usage(int code)
{
	fprintf(code == 0 ? stdout : stderr,
	    "usage: duetctl [-s socket | -c file] status [--json]\n"
	    "       duetctl [-s socket | -c file] metrics\n"
	    "       duetctl [-s socket | -c file] wait-sync [--timeout seconds]\n"
	    "       duetctl [-s socket | -c file] verify [--start offset] "
	    "[--stop offset]\n"
	    "       duetctl [-s socket | -c file] resync\n"
	    "       duetctl [-s socket | -c file] resolve --discard-local\n"
	    "       duetctl [-s socket | -c file] command [args ...]\n"
	    "       duetctl -h | --help\n");
	exit(code);
}

static void __attribute__((noreturn, format(printf, 2, 3)))
die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("duetctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

static double
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A connected socket, or -1 with errno (ENAMETOOLONG: path too long). */
static int
ctl_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd, saved;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/*
 * Sends line and reads one reply line (without its newline) into *out (the
 * caller frees it). Returns 0, or -1 with a reason in err.
 */
static int
ctl_request(int fd, const char *line, int timeout_ms, char **out,
    char *err, size_t errlen)
{
	size_t len = strlen(line), off = 0, cap = 4096, n = 0;
	double deadline = mono_ms() + timeout_ms;
	char *buf, *nl;
	ssize_t r;

	*out = NULL;
	while (off < len) {
		r = send(fd, line + off, len - off, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "send: %s", strerror(errno));
			return -1;
		}
		off += (size_t)r;
	}
	if ((buf = malloc(cap)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		int left = (int)(deadline - mono_ms());

		if (left <= 0) {
			snprintf(err, errlen, "no reply within %d s",
			    timeout_ms / 1000);
			goto fail;
		}
		if (poll(&pfd, 1, left) < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "poll: %s", strerror(errno));
			goto fail;
		}
		if (pfd.revents == 0)
			continue;
		if (n + 1 >= cap) {
			char *nb;

			if (cap >= REPLY_MAX) {
				snprintf(err, errlen, "reply longer than %d "
				    "bytes", REPLY_MAX);
				goto fail;
			}
			if ((nb = realloc(buf, cap * 2)) == NULL) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			buf = nb;
			cap *= 2;
		}
		r = recv(fd, buf + n, cap - n - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "recv: %s", strerror(errno));
			goto fail;
		}
		if (r == 0) {
			snprintf(err, errlen, "the daemon closed the "
			    "connection without a reply");
			goto fail;
		}
		buf[n + (size_t)r] = '\0';
		nl = memchr(buf + n, '\n', (size_t)r);
		n += (size_t)r;
		if (nl != NULL) {
			*nl = '\0';
			*out = buf;
			return 0;
		}
	}
fail:
	free(buf);
	return -1;
}

/* Asks once on a new connection; exits 2 on any failure. */
static json_t *
ask(const char *request, char **raw)
{
	char err[256], *line;
	json_error_t jerr;
	json_t *reply;
	int fd;

	if ((fd = ctl_connect(sock_path)) == -1)
		die(EXIT_ERROR, "%s: connect: %s", sock_path, strerror(errno));
	if (ctl_request(fd, request, REQ_TIMEOUT_MS, &line, err,
	    sizeof(err)) != 0) {
		close(fd);
		die(EXIT_ERROR, "%s: %s", sock_path, err);
	}
	close(fd);
	reply = json_loads(line, 0, &jerr);
	if (reply == NULL || !json_is_object(reply))
		die(EXIT_ERROR, "%s: the reply is not a JSON object: %s",
		    sock_path, reply == NULL ? jerr.text : "another type");
	if (raw != NULL)
		*raw = line;
	else
		free(line);
	return reply;
}

/* Exits 2 with the daemon's message when the reply says ok:false. */
static void
check_ok(json_t *reply, const char *what)
{
	json_t *e;
	const char *code, *msg;

	if (json_is_true(json_object_get(reply, "ok")))
		return;
	e = json_object_get(reply, "error");
	code = json_string_value(json_object_get(e, "code"));
	msg = json_string_value(json_object_get(e, "message"));
	die(EXIT_ERROR, "%s: %s: %s (%s)", sock_path, what,
	    msg ? msg : "failed", code ? code : "no error code");
}

/* Whether reply is the refusal of a daemon with too many status clients. */
static int
is_busy(json_t *reply)
{
	const char *code = json_string_value(json_object_get(
	    json_object_get(reply, "error"), "code"));

	return !json_is_true(json_object_get(reply, "ok")) && code != NULL &&
	    strcmp(code, "busy") == 0;
}

/* ---- reading the status reply ------------------------------------------ */

/* The string at a dotted path ("connection.state"), or NULL. */
static json_t *
jget(json_t *o, const char *path)
{
	char key[64];
	const char *dot;
	size_t n;

	while (o != NULL && (dot = strchr(path, '.')) != NULL) {
		n = (size_t)(dot - path);
		if (n >= sizeof(key))
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		o = json_object_get(o, key);
		path = dot + 1;
	}
	return o != NULL ? json_object_get(o, path) : NULL;
}

static const char *
jstr(json_t *o, const char *path)
{
	return json_string_value(jget(o, path));
}

/* 1 and *v when the field is a number. */
static int
jnum(json_t *o, const char *path, double *v)
{
	json_t *j = jget(o, path);

	if (!json_is_number(j))
		return 0;
	*v = json_number_value(j);
	return 1;
}

/*
 * Healthy: connected, this copy up to date, no resync running, nothing out
 * of sync. Returns EXIT_HEALTHY, or EXIT_DEGRADED with why.
 */
static int
health(json_t *st, char *why, size_t len)
{
	const char *conn = jstr(st, "connection.state");
	const char *disk = jstr(st, "disk");
	double oos = 0, progress = 0;

	if (conn == NULL || strcmp(conn, "connected") != 0) {
		snprintf(why, len, "connection %s", conn ? conn : "unknown");
		return EXIT_DEGRADED;
	}
	if (disk == NULL || strcmp(disk, "up-to-date") != 0) {
		snprintf(why, len, "disk %s", disk ? disk : "unknown");
		return EXIT_DEGRADED;
	}
	if (!json_is_false(jget(st, "resync.running"))) {
		if (jnum(st, "resync.progress", &progress))
			snprintf(why, len, "resync running (%.1f%%)",
			    progress * 100);
		else
			snprintf(why, len, "resync running");
		return EXIT_DEGRADED;
	}
	/* null: this daemon cannot know (the mirror); disk says enough. */
	if (jnum(st, "out_of_sync_bytes", &oos) && oos != 0) {
		snprintf(why, len, "%.0f bytes out of sync", oos);
		return EXIT_DEGRADED;
	}
	snprintf(why, len, "healthy");
	return EXIT_HEALTHY;
}

/* ---- status: the table ------------------------------------------------- */

static const char *
fmt_bytes(double b, char *buf, size_t len)
{
	static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	unsigned i = 0;

	while (b >= 1024 && i + 1 < sizeof(unit) / sizeof(unit[0])) {
		b /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%.0f B", b);
	else
		snprintf(buf, len, "%.1f %s", b, unit[i]);
	return buf;
}

static const char *
fmt_secs(double s, char *buf, size_t len)
{
	unsigned long long t = s > 0 ? (unsigned long long)s : 0;
	unsigned long long d = t / 86400, h = t / 3600 % 24, m = t / 60 % 60;

	if (d > 0)
		snprintf(buf, len, "%llud%lluh%llum", d, h, m);
	else if (h > 0)
		snprintf(buf, len, "%lluh%llum%llus", h, m, t % 60);
	else if (m > 0)
		snprintf(buf, len, "%llum%llus", m, t % 60);
	else
		snprintf(buf, len, "%llus", t);
	return buf;
}

/* A number field as text, or "?" when missing. */
static const char *
num(json_t *st, const char *path, char *buf, size_t len)
{
	double v;

	if (!jnum(st, path, &v))
		return "?";
	snprintf(buf, len, "%.0f", v);
	return buf;
}

static const char *
str(json_t *st, const char *path)
{
	const char *s = jstr(st, path);

	return s != NULL ? s : "?";
}

#define ROW(label, ...) do {						\
	printf("  %-13s ", label);					\
	printf(__VA_ARGS__);						\
	putchar('\n');							\
} while (0)

static void
print_table(json_t *st)
{
	char a[64], b[64], c[64], d[64], e[64], why[128];
	json_t *groups, *g;
	size_t i;
	double v, since;
	int rc;

	rc = health(st, why, sizeof(why));
	printf("%s (%s): %s\n", str(st, "volume"), str(st, "role"),
	    rc == EXIT_HEALTHY ? "healthy" : "DEGRADED");
	if (rc != EXIT_HEALTHY)
		ROW("why", "%s", why);
	ROW("mode", "%s", str(st, "mode"));

	printf("  %-13s %s", "connection", str(st, "connection.state"));
	if (jstr(st, "connection.peer") != NULL)
		printf(", peer %s", jstr(st, "connection.peer"));
	if (jnum(st, "connection.since", &since) && since > 0) {
		time_t t = (time_t)since;
		struct tm tm;

		strftime(a, sizeof(a), "%Y-%m-%d %H:%M:%S",
		    localtime_r(&t, &tm));
		printf(", since %s (%s ago)", a,
		    fmt_secs(difftime(time(NULL), t), b, sizeof(b)));
	}
	putchar('\n');

	ROW("disk", "%s", str(st, "disk"));
	ROW("out of sync", "%s", jnum(st, "out_of_sync_bytes", &v) ?
	    fmt_bytes(v, a, sizeof(a)) : json_is_null(jget(st,
	    "out_of_sync_bytes")) ? "unknown" : "?");
	if (json_is_true(jget(st, "resync.running"))) {
		/* The mirror knows only that it runs: nulls are left out. */
		printf("  %-13s running", "resync");
		if (jnum(st, "resync.progress", &v))
			printf(", %.1f%% done", v * 100);
		if (jnum(st, "resync.rate_bytes_per_s", &v))
			printf(", %s/s", fmt_bytes(v, b, sizeof(b)));
		if (jnum(st, "resync.eta_s", &v))
			printf(", eta %s", fmt_secs(v, c, sizeof(c)));
		putchar('\n');
	} else {
		ROW("resync", "%s", json_is_false(jget(st, "resync.running")) ?
		    "idle" : "?");
	}
	ROW("inflight", "%s ops, %s", num(st, "inflight.ops", a, sizeof(a)),
	    jnum(st, "inflight.bytes", &v) ? fmt_bytes(v, b, sizeof(b)) : "?");

	/* Queue depths: group:main/table, eight groups to a line. */
	groups = json_object_get(st, "groups");
	printf("  %-13s", "queues");
	if (!json_is_array(groups) || json_array_size(groups) == 0)
		printf(" ?");
	json_array_foreach(groups, i, g) {
		if (i > 0 && i % 8 == 0)
			printf("\n  %-13s", "");
		printf(" %zu:%s/%s", i, num(g, "main", a, sizeof(a)),
		    num(g, "table", b, sizeof(b)));
	}
	printf("%s\n", json_is_array(groups) ? "  (group:main/table)" : "");

	ROW("ops", "reads %s, writes %s, flushes %s, trims %s, zeroes %s",
	    num(st, "counters.reads", a, sizeof(a)),
	    num(st, "counters.writes", b, sizeof(b)),
	    num(st, "counters.flushes", c, sizeof(c)),
	    num(st, "counters.trims", d, sizeof(d)),
	    num(st, "counters.zeroes", e, sizeof(e)));
	ROW("bytes", "read %s, written %s",
	    jnum(st, "counters.bytes_read", &v) ? fmt_bytes(v, a, sizeof(a)) :
	    "?", jnum(st, "counters.bytes_written", &v) ?
	    fmt_bytes(v, b, sizeof(b)) : "?");
	ROW("errors", "%s, reconnects %s",
	    num(st, "counters.errors", a, sizeof(a)),
	    num(st, "counters.reconnects", b, sizeof(b)));
	ROW("last error", "%s", jstr(st, "last_error") ? jstr(st, "last_error")
	    : "-");
	ROW("uptime", "%s", jnum(st, "uptime_s", &v) ?
	    fmt_secs(v, a, sizeof(a)) : "?");
	ROW("version", "duet %s, protocol %s", str(st, "version.duet"),
	    num(st, "version.protocol", a, sizeof(a)));
}

static int
cmd_status(int argc, char **argv)
{
	char why[128], *raw;
	json_t *st;
	int json = 0, rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
			json = 1;
		else
			usage(EXIT_ERROR);
	}
	st = ask("status\n", &raw);
	check_ok(st, "status");
	rc = health(st, why, sizeof(why));
	if (json)
		printf("%s\n", raw);		/* passed through unchanged */
	else
		print_table(st);
	free(raw);
	json_decref(st);
	return rc;
}

/* ---- metrics: Prometheus text exposition ------------------------------- */

static char labels[512];		/* volume="...",role="..." */

/* Label values escape \, " and newline (exposition format). */
static void
label_escape(const char *s, char *out, size_t len)
{
	size_t n = 0;

	for (; *s != '\0' && n + 3 < len; s++) {
		if (*s == '\\' || *s == '"') {
			out[n++] = '\\';
			out[n++] = *s;
		} else if (*s == '\n') {
			out[n++] = '\\';
			out[n++] = 'n';
		} else {
			out[n++] = *s;
		}
	}
	out[n] = '\0';
}

static void
metric_head(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metric_val(const char *name, const char *extra, double v)
{
	/* Integers as integers (no libm: a cast tells). */
	if (v > -9e15 && v < 9e15 && v == (double)(long long)v)
		printf("%s{%s%s%s} %.0f\n", name, labels, extra ? "," : "",
		    extra ? extra : "", v);
	else {
		/* The shortest of %.15g and %.17g that reads back exactly. */
		char num[32];

		snprintf(num, sizeof(num), "%.15g", v);
		if (strtod(num, NULL) != v)
			snprintf(num, sizeof(num), "%.17g", v);
		printf("%s{%s%s%s} %s\n", name, labels, extra ? "," : "",
		    extra ? extra : "", num);
	}
}

/* One metric from one field; nothing when the daemon does not send it. */
static void
metric(json_t *st, const char *path, const char *name, const char *type,
    const char *help)
{
	json_t *j = jget(st, path);
	double v;

	if (json_is_boolean(j))
		v = json_is_true(j);
	else if (json_is_number(j))
		v = json_number_value(j);
	else
		return;
	metric_head(name, type, help);
	metric_val(name, NULL, v);
}

/* An enumeration as one 0/1 series per state (the usual exposition). */
static void
metric_enum(json_t *st, const char *path, const char *name, const char *help,
    const char *const *states)
{
	const char *cur = jstr(st, path);
	char extra[128];

	if (cur == NULL)
		return;
	metric_head(name, "gauge", help);
	for (; *states != NULL; states++) {
		snprintf(extra, sizeof(extra), "state=\"%s\"", *states);
		metric_val(name, extra, strcmp(cur, *states) == 0);
	}
}

static int
cmd_metrics(int argc, char **argv)
{
	static const char *const conn_states[] = {
		"connected", "connecting", "disconnected", "listening",
		"split-brain", NULL
	};
	static const char *const disk_states[] = {
		"up-to-date", "outdated", "inconsistent", "failed", NULL
	};
	static const struct {
		const char *field, *name, *help;
	} counters[] = {
		{ "reads", "duet_reads_total", "Read requests served." },
		{ "writes", "duet_writes_total", "Write requests." },
		{ "flushes", "duet_flushes_total", "Flush requests." },
		{ "trims", "duet_trims_total", "Trim requests." },
		{ "zeroes", "duet_zeroes_total", "Write-zeroes requests." },
		{ "bytes_read", "duet_read_bytes_total", "Bytes read." },
		{ "bytes_written", "duet_written_bytes_total",
		    "Bytes written." },
		{ "errors", "duet_errors_total", "Failed operations." },
		{ "reconnects", "duet_reconnects_total",
		    "Connections to the peer after the first." },
	};
	char vol[128], role[64], mode[64], ver[64], extra[160], why[256];
	char path[64];
	json_t *st, *groups, *g;
	size_t i;

	(void)argv;
	if (argc != 1)
		usage(EXIT_ERROR);
	st = ask("status\n", NULL);
	check_ok(st, "status");
	label_escape(jstr(st, "volume") ? jstr(st, "volume") : "", vol,
	    sizeof(vol));
	label_escape(jstr(st, "role") ? jstr(st, "role") : "", role,
	    sizeof(role));
	snprintf(labels, sizeof(labels), "volume=\"%s\",role=\"%s\"", vol,
	    role);

	label_escape(jstr(st, "mode") ? jstr(st, "mode") : "", mode,
	    sizeof(mode));
	label_escape(jstr(st, "version.duet") ? jstr(st, "version.duet") : "",
	    ver, sizeof(ver));
	metric_head("duet_info", "gauge", "Constant 1, with the daemon's "
	    "mode and version as labels.");
	snprintf(extra, sizeof(extra), "mode=\"%s\",version=\"%s\"", mode,
	    ver);
	metric_val("duet_info", extra, 1);
	metric_head("duet_healthy", "gauge", "1 when connected, up to date, "
	    "not resyncing and nothing out of sync.");
	metric_val("duet_healthy", NULL, health(st, why, sizeof(why)) ==
	    EXIT_HEALTHY);

	metric_enum(st, "connection.state", "duet_connection_state",
	    "The connection to the peer (1 for the current state).",
	    conn_states);
	metric(st, "connection.since", "duet_connection_since_seconds",
	    "gauge", "Unix time of the last connection state change.");
	metric_enum(st, "disk", "duet_disk_state",
	    "This copy of the volume (1 for the current state).",
	    disk_states);
	metric(st, "out_of_sync_bytes", "duet_out_of_sync_bytes", "gauge",
	    "Bytes the mirror does not have yet.");
	metric(st, "resync.running", "duet_resync_running", "gauge",
	    "1 while a resync runs.");
	metric(st, "resync.progress", "duet_resync_progress_ratio", "gauge",
	    "Resync progress, 0 to 1.");
	metric(st, "resync.rate_bytes_per_s", "duet_resync_bytes_per_second",
	    "gauge", "Resync rate in bytes per second.");
	metric(st, "resync.eta_s", "duet_resync_eta_seconds", "gauge",
	    "Estimated seconds until the resync completes.");
	metric(st, "inflight.ops", "duet_inflight_ops", "gauge",
	    "Operations in flight.");
	metric(st, "inflight.bytes", "duet_inflight_bytes", "gauge",
	    "Bytes in flight.");

	groups = json_object_get(st, "groups");
	if (json_is_array(groups) && json_array_size(groups) > 0) {
		metric_head("duet_group_main_queue", "gauge",
		    "Operations waiting in a task group's main queue.");
		json_array_foreach(groups, i, g) {
			snprintf(extra, sizeof(extra), "group=\"%zu\"", i);
			if (json_is_number(json_object_get(g, "main")))
				metric_val("duet_group_main_queue", extra,
				    json_number_value(json_object_get(g, "main")));
		}
		metric_head("duet_group_conflict_table", "gauge",
		    "Entries in a task group's conflict table.");
		json_array_foreach(groups, i, g) {
			snprintf(extra, sizeof(extra), "group=\"%zu\"", i);
			if (json_is_number(json_object_get(g, "table")))
				metric_val("duet_group_conflict_table", extra,
				    json_number_value(json_object_get(g, "table")));
		}
	}

	for (i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		snprintf(path, sizeof(path), "counters.%s", counters[i].field);
		metric(st, path, counters[i].name, "counter", counters[i].help);
	}
	metric(st, "uptime_s", "duet_uptime_seconds", "gauge",
	    "Seconds since the daemon started.");
	json_decref(st);
	return fflush(stdout) == 0 ? 0 : EXIT_ERROR;
}

/* ---- wait-sync ---------------------------------------------------------- */

static int
cmd_wait_sync(int argc, char **argv)
{
	double timeout = 0, deadline, left;
	char err[256], why[300] = "no reply yet", *line, *end;
	json_error_t jerr;
	json_t *st;
	int fd, rc;

	for (int i = 1; i < argc; i++) {
		const char *v = NULL;

		if (strcmp(argv[i], "--timeout") == 0 ||
		    strcmp(argv[i], "-t") == 0) {
			if (++i >= argc)
				usage(EXIT_ERROR);
			v = argv[i];
		} else if (strncmp(argv[i], "--timeout=", 10) == 0) {
			v = argv[i] + 10;
		} else {
			usage(EXIT_ERROR);
		}
		errno = 0;
		timeout = strtod(v, &end);
		if (errno != 0 || end == v || *end != '\0' || timeout < 0 ||
		    !isfinite(timeout))
			die(EXIT_ERROR, "wait-sync: bad timeout \"%s\"", v);
	}
	deadline = timeout > 0 ? mono_ms() + timeout * 1000 : INFINITY;

	/*
	 * A socket that cannot be connected to at the start is a mistake
	 * (exit 2); a daemon that closes or does not answer may be
	 * restarting, and one busy with other clients answers later: wait
	 * for them.
	 */
	if ((fd = ctl_connect(sock_path)) == -1)
		die(EXIT_ERROR, "%s: connect: %s", sock_path, strerror(errno));
	for (;;) {
		left = deadline - mono_ms();
		if (fd == -1 && (fd = ctl_connect(sock_path)) == -1)
			snprintf(why, sizeof(why), "connect: %s",
			    strerror(errno));
		if (fd != -1) {
			if (ctl_request(fd, "status\n", left < REQ_TIMEOUT_MS ?
			    (int)(left > 1 ? left : 1) : REQ_TIMEOUT_MS, &line,
			    err, sizeof(err)) != 0) {
				snprintf(why, sizeof(why), "%s", err);
				close(fd);
				fd = -1;
			} else {
				st = json_loads(line, 0, &jerr);
				free(line);
				if (st == NULL || !json_is_object(st))
					die(EXIT_ERROR, "%s: the reply is not "
					    "a JSON object", sock_path);
				if (is_busy(st)) {
					snprintf(why, sizeof(why), "the daemon "
					    "is busy with other status clients");
					json_decref(st);
					close(fd);
					fd = -1;
					goto next;
				}
				check_ok(st, "status");
				rc = health(st, why, sizeof(why));
				json_decref(st);
				if (rc == EXIT_HEALTHY) {
					close(fd);
					return EXIT_HEALTHY;
				}
			}
		}
next:
		if (mono_ms() + POLL_MS > deadline) {
			if (fd != -1)
				close(fd);
			fprintf(stderr, "duetctl: %s: not in sync after %g s: "
			    "%s\n", sock_path, timeout, why);
			return EXIT_TIMEOUT;
		}
		usleep(POLL_MS * 1000);
	}
}

/* ---- any other verb ------------------------------------------------------ */

static int
cmd_other(int argc, char **argv)
{
	size_t len = 2;
	char *req, *raw;
	json_t *reply;

	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	if ((req = malloc(len)) == NULL)
		die(EXIT_ERROR, "out of memory");
	req[0] = '\0';
	for (int i = 0; i < argc; i++) {
		if (strchr(argv[i], '\n') != NULL)
			die(EXIT_ERROR, "%s: a newline in an argument",
			    argv[0]);
		strcat(req, argv[i]);
		strcat(req, i + 1 < argc ? " " : "\n");
	}
	reply = ask(req, &raw);
	free(req);
	check_ok(reply, argv[0]);
	printf("%s\n", raw);
	free(raw);
	json_decref(reply);
	return 0;
}

int
main(int argc, char **argv)
{
	static struct config cfg;
	const char *conf = NULL;
	char err[1024];
	int ch;

	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};

	while ((ch = getopt_long(argc, argv, "+c:hs:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			conf = optarg;
			break;
		case 's':
			sock_path = optarg;
			break;
		case 'h':
			usage(0);
		default:
			usage(EXIT_ERROR);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1 || (conf != NULL && sock_path != NULL))
		usage(EXIT_ERROR);
	if (conf != NULL) {
		if (config_load(conf, &cfg, err, sizeof(err)) != 0)
			die(EXIT_ERROR, "%s", err);
		sock_path = cfg.status_socket;
	}
	if (sock_path == NULL || *sock_path == '\0') {
		fprintf(stderr, "duetctl: no socket: give -s SOCKET or "
		    "-c FILE\n");
		usage(EXIT_ERROR);
	}

	if (strcmp(argv[0], "status") == 0)
		return cmd_status(argc, argv);
	if (strcmp(argv[0], "metrics") == 0)
		return cmd_metrics(argc, argv);
	if (strcmp(argv[0], "wait-sync") == 0)
		return cmd_wait_sync(argc, argv);
	return cmd_other(argc, argv);
}
