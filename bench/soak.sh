#!/bin/sh
# bench/soak.sh [--quick] [BUILD_DIR]: DURATION of mixed client load on a duet
# pair whose mirror is stopped and restarted every RESTART_EVERY, with the
# RSS of both daemons sampled every SAMPLE_EVERY; at the end the two volumes
# are compared.
#
#   - One pair on 127.0.0.1 (TLS, mode MODE, 64 KiB extents, a VOL_SIZE
#     volume of pseudo-random data, copied by the initial sync).
#   - fio (ioengine=nbd, time_based, DURATION) runs three jobs the whole
#     time, each on its own NBD connection and its own part of the volume:
#       mixed   randrw 50/50, bsrange 4k-64k, iodepth 8, the first half
#       seq     sequential 64 KiB writes, iodepth 2, at most 20 MB/s, the
#               third quarter
#       verify  randwrite 8 KiB, iodepth 4, verify=crc32c with
#               verify_backlog=64 (every write is read back and checked
#               soon after, through the primary: the client's view), the
#               last quarter
#   - Every RESTART_EVERY s the mirror is stopped, alternately with SIGTERM
#     and SIGKILL, and started again OUTAGE s later. The primary reconnects
#     by itself (its backoff: 1, 2, 4 ... 30 s) and resyncs.
#   - Every SAMPLE_EVERY s: VmRSS and VmHWM of both daemons
#     (/proc/PID/status), the link state, out_of_sync_extents and the
#     primary's counters, into a CSV.
#   - At the end: fio's end, the resync (SYNC_TIMEOUT at most), SIGTERM to
#     the primary then the mirror (both must exit 0), cmp of the volumes.
#
# The report: RSS min / max / last per daemon and the ratio of the last
# third's max to the first third's (flat is about <= 1.1; reported, not
# asserted), the restarts and resyncs, what each resync moved (log and
# counters deltas) against what was out of sync, fio's totals, and "images
# match" or "MISMATCH".
#
# It measures; the exit status is 1 only on a real error: a MISMATCH (the
# volumes, or fio's verify), a daemon that dies, fails to start, or exits
# non-zero on SIGTERM, a resync that does not finish; 77 when a tool is
# missing.
#
# Environment:
#   DURATION [600]       seconds of load (--quick: 60)
#   RESTART_EVERY [120]  seconds between mirror stops (--quick: 20)
#   OUTAGE [10]          seconds the mirror stays away (--quick: 4)
#   SAMPLE_EVERY [10]    seconds between RSS samples (--quick: 2)
#   VOL_SIZE [2G]        the volume (--quick: 256M)
#   MODE [sync]          replication mode
#   NICE [10]            the daemons and fio run under nice -n NICE (the
#                        soak measures memory and correctness, not speed,
#                        and the machine may be shared); 0: not
#   SYNC_TIMEOUT [300]   seconds allowed for the initial and the final sync
#   BENCH_TMP [/var/tmp] where the volumes go (tmpfs is refused)
#   KEEP [0]             1: keep the work directory (also kept on MISMATCH)
# Output: the report on stdout (also BUILD_DIR/bench/soak[-quick].summary),
# the samples in BUILD_DIR/bench/soak[-quick].rss.csv, one row per mirror
# restart in .restarts.csv, the daemons' logs and fio's JSON.
set -u
BL_NAME=soak
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

bl_args "$@"
if [ "$QUICK" = 1 ]; then
	DURATION=${DURATION:-60}
	RESTART_EVERY=${RESTART_EVERY:-20}
	OUTAGE=${OUTAGE:-4}
	SAMPLE_EVERY=${SAMPLE_EVERY:-2}
	VOL_SIZE=${VOL_SIZE:-256M}
fi
DURATION=${DURATION:-600}
RESTART_EVERY=${RESTART_EVERY:-120}
OUTAGE=${OUTAGE:-10}
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
VOL_SIZE=${VOL_SIZE:-2G}
MODE=${MODE:-sync}
NICE=${NICE:-10}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-300}
for _v in DURATION RESTART_EVERY OUTAGE SAMPLE_EVERY NICE SYNC_TIMEOUT; do
	eval "_x=\$$_v"
	# shellcheck disable=SC2154 # set by the eval
	case $_x in '' | *[!0-9]*)
		echo "soak: $_v must be a number of seconds" >&2; exit 1 ;;
	esac
done
if [ "$SAMPLE_EVERY" -le 0 ] || [ "$RESTART_EVERY" -le "$OUTAGE" ]; then
	echo "soak: need SAMPLE_EVERY > 0 and RESTART_EVERY > OUTAGE" >&2
	exit 1
fi
[ "$NICE" -gt 0 ] && BL_NICE="nice -n $NICE"

bl_setup "$B"
TAG=soak
[ "$QUICK" = 1 ] && TAG=soak-quick
VOL_BYTES=$(numfmt --from=iec "$VOL_SIZE") ||
    { echo "soak: bad VOL_SIZE '$VOL_SIZE'" >&2; exit 1; }
[ $((VOL_BYTES % (4 * 65536))) = 0 ] ||
    { echo "soak: VOL_SIZE must be a multiple of 256 KiB" >&2; exit 1; }

FAILED=""
D=$W/pair
RSS=$W/rss.csv
RESTARTS=$W/restarts.csv
echo "t_s,primary_pid,primary_rss_kb,primary_hwm_kb,mirror_pid,mirror_rss_kb,mirror_hwm_kb,state,out_of_sync_extents,resync_running,inflight_bytes,writes,reads,resync_extents" >"$RSS"
echo "cycle,signal,t_stop,t_start,stop_status,resync_extents_before,oos_at_restart" >"$RESTARTS"

fail() {
	say "$*"
	FAILED="$FAILED
  $*"
}

hwm_kb() {
	awk '/^VmHWM:/ { print $2; f = 1 } END { if (!f) print "-" }' \
	    "/proc/$1/status" 2>/dev/null || echo -
}

# sample T: one row of $RSS.
sample() {
	_mp=- _mr=- _mh=-
	if [ -n "$MIRROR_PID" ]; then
		_mp=$MIRROR_PID _mr=$(rss_kb "$MIRROR_PID") _mh=$(hwm_kb "$MIRROR_PID")
	fi
	_s=$(st "$D/primary.status" 's["connection"]["state"]' \
	    's["out_of_sync_extents"]' 'int(s["resync"]["running"])' \
	    's["inflight"]["bytes"]' 's["counters"]["writes"]' \
	    's["counters"]["reads"]' 's["counters"]["resync_extents"]') ||
	    _s="- - - - - - -"
	echo "$1,$PRIMARY_PID,$(rss_kb "$PRIMARY_PID"),$(hwm_kb "$PRIMARY_PID"),$_mp,$_mr,$_mh,$(echo "$_s" | tr ' ' ,)" >>"$RSS"
}

# ---- main

# shellcheck disable=SC2046 # two numbers
set -- $(busy_pct 3)
{
	echo "== duet soak: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc $(nproc), $(uname -sr)"
	echo "   $DUET_VERSION: binaries from $B, built $BUILT"
	echo "   $(fio --version); volume $VOL_SIZE (random) in $BENCH_TMP, extent 64 KiB, mode $MODE," \
	    "primary.max_inflight 1024 ops / max_inflight_bytes 64M (defaults)"
	echo "   $DURATION s of load; the mirror stopped every $RESTART_EVERY s" \
	    "(SIGTERM, SIGKILL, ...) for $OUTAGE s; RSS sampled every $SAMPLE_EVERY s;" \
	    "nice $NICE"
	echo "   host before the start: $1 % busy, $2 % steal over 3 s"
	echo
} >"$W/header"
cat "$W/header"

duet_confs "$D" "$VOL_SIZE" "$MODE"
mkvol_random "$D/primary.img" "$VOL_BYTES" || exit 1
if ! start_mirror "$D" || ! start_primary "$D"; then
	fail "the pair did not start"
	exit 1
fi
if ! wait_in_sync "$D" "$SYNC_TIMEOUT"; then
	fail "no initial sync within $SYNC_TIMEOUT s"
	exit 1
fi
say "initial sync: $(sed -n 's/.*resync complete: //p' "$D/primary.log" | head -1)"

Q=$((VOL_BYTES / 4))
cat >"$W/soak.fio" <<EOF
[global]
ioengine=nbd
uri=$NBD_URI
time_based=1
runtime=$DURATION
randrepeat=0

[mixed]
rw=randrw
rwmixread=50
bsrange=4k-64k
iodepth=8
norandommap=1
offset=0
size=$((2 * Q))

[seq]
rw=write
bs=64k
iodepth=2
rate=20m
offset=$((2 * Q))
size=$Q

[verify]
rw=randwrite
bs=8k
iodepth=4
offset=$((3 * Q))
size=$Q
verify=crc32c
verify_backlog=64
verify_fatal=1
verify_state_save=0
EOF
# In $W: fio leaves nothing (verify_state_save=0), but whatever it might is
# removed with $W. The subshell execs nice, which execs fio: $! is fio's pid.
# shellcheck disable=SC2086 # BL_NICE is a word list or nothing
(cd "$W" && exec $BL_NICE fio --output-format=json --output="$W/fio.json" \
    "$W/soak.fio") >"$W/fio.log" 2>&1 &
FIO_PID=$!
T0=$(date +%s)
say "fio started (pid $FIO_PID); $DURATION s"

next_sample=0
next_stop=$RESTART_EVERY
restart_at=""
cycle=0
sig=TERM
while :; do
	now=$(($(date +%s) - T0))
	[ $now -ge "$DURATION" ] && break
	if ! alive "$FIO_PID"; then
		fail "fio ended after $now s, before the $DURATION s were up"
		break
	fi
	if ! alive "$PRIMARY_PID"; then
		fail "duet-primary died at $now s"
		break
	fi
	if [ -n "$MIRROR_PID" ] && ! alive "$MIRROR_PID"; then
		wait "$MIRROR_PID"
		fail "duet-mirror died at $now s (exit $?), not stopped by the bench"
		MIRROR_PID=""
		restart_at=$now
	fi
	if [ $now -ge $next_sample ]; then
		sample $now
		next_sample=$((next_sample + SAMPLE_EVERY))
	fi
	if [ -n "$MIRROR_PID" ] && [ $now -ge "$next_stop" ] &&
	    [ $((now + OUTAGE)) -lt "$DURATION" ]; then
		cycle=$((cycle + 1))
		_before=$(st "$D/primary.status" 's["counters"]["resync_extents"]')
		say "cycle $cycle: SIG$sig to the mirror at $now s"
		if [ $sig = TERM ]; then
			stop_pid "$MIRROR_PID" 30
			_rc=$?
			[ $_rc = 0 ] || fail "duet-mirror exited $_rc on SIGTERM (cycle $cycle)"
			echo "=== stopped (SIGTERM) $(date '+%T.%N')" >>"$D/mirror.log"
		else
			kill_pid "$MIRROR_PID"
			_rc=killed
			echo "=== killed (SIGKILL) $(date '+%T.%N')" >>"$D/mirror.log"
		fi
		MIRROR_PID=""
		echo "$cycle,$sig,$now,,$_rc,${_before:-?}," >>"$RESTARTS"
		restart_at=$((now + OUTAGE))
		next_stop=$((next_stop + RESTART_EVERY))
		[ $sig = TERM ] && sig=KILL || sig=TERM
	fi
	if [ -z "$MIRROR_PID" ] && [ -n "$restart_at" ] && [ $now -ge "$restart_at" ]; then
		_oos=$(st "$D/primary.status" 's["out_of_sync_extents"]')
		if ! start_mirror "$D"; then
			fail "duet-mirror did not restart at $now s"
			break
		fi
		say "cycle $cycle: mirror restarted at $now s ($_oos extents out of sync)"
		# fill in t_start and oos_at_restart of the last row
		sed -i "\$s/^\([^,]*,[^,]*,[^,]*\),,\(.*\),\$/\1,$now,\2,${_oos:-?}/" "$RESTARTS"
		restart_at=""
	fi
	sleep 1
done
sample $(($(date +%s) - T0))

# The end: fio finishes by itself (time_based); then the last resync.
_n=0
while alive "$FIO_PID" && [ $_n -lt 1200 ]; do
	sleep 0.1
	_n=$((_n + 1))
done
if alive "$FIO_PID"; then
	fail "fio still running 120 s after its runtime: stopped"
	stop_pid "$FIO_PID" 10
else
	wait "$FIO_PID"
	_rc=$?
	[ $_rc = 0 ] || fail "fio exited $_rc: $(grep -iE 'verify|error|bad' "$W/fio.log" | head -3)"
fi
FIO_PID=""
if [ -z "$MIRROR_PID" ] && alive "$PRIMARY_PID"; then
	start_mirror "$D" || fail "duet-mirror did not restart at the end"
fi
_t=$(date +%s)
if alive "$PRIMARY_PID" && [ -n "$MIRROR_PID" ]; then
	wait_in_sync "$D" "$SYNC_TIMEOUT" ||
	    fail "not in sync $SYNC_TIMEOUT s after the load"
fi
say "in sync $(($(date +%s) - _t)) s after the load"
sample $(($(date +%s) - T0))
FINAL=$(st "$D/primary.status" 's["counters"]["resync_extents"]' \
    's["counters"]["resync_bytes"]' 's["counters"]["reconnects"]')
alive "$PRIMARY_PID" || fail "duet-primary died"
if [ -n "$PRIMARY_PID" ]; then
	stop_pid "$PRIMARY_PID" 60
	_rc=$?
	[ $_rc = 0 ] || fail "duet-primary exited $_rc on SIGTERM at the end"
	PRIMARY_PID=""
fi
if [ -n "$MIRROR_PID" ]; then
	stop_pid "$MIRROR_PID" 30
	_rc=$?
	[ $_rc = 0 ] || fail "duet-mirror exited $_rc on SIGTERM at the end"
	MIRROR_PID=""
fi
if cmp "$D/primary.img" "$D/mirror.img" >"$W/cmp.out" 2>&1; then
	IMAGES="images match ($VOL_BYTES bytes, cmp)"
else
	IMAGES="MISMATCH: $(head -1 "$W/cmp.out")"
	fail "$IMAGES"
	KEEP=1
fi

cp "$RSS" "$OUT/$TAG.rss.csv"
cp "$RESTARTS" "$OUT/$TAG.restarts.csv"
cp "$D/primary.log" "$OUT/$TAG.primary.log"
cp "$D/mirror.log" "$OUT/$TAG.mirror.log"
cp "$W/fio.json" "$OUT/$TAG.fio.json" 2>/dev/null

python3 - "$RSS" "$RESTARTS" "$D/primary.log" "$W/fio.json" "${FINAL:-? ? ?}" \
    "$IMAGES" <<'EOF' | tee "$W/table"
import csv, json, re, sys
rss = list(csv.DictReader(open(sys.argv[1])))
rst = list(csv.DictReader(open(sys.argv[2])))
log = open(sys.argv[3]).read().splitlines()
final = sys.argv[5].split()
images = sys.argv[6]


def ints(rows, k):
    return [(float(r["t_s"]), int(r[k])) for r in rows if r[k].isdigit()]


def thirds(v):
    """max of the first third's samples, of the last third's, their ratio"""
    first = [x for t, x in v if t <= tmax / 3]
    last = [x for t, x in v if t >= 2 * tmax / 3]
    f, l = max(first, default=0), max(last, default=0)
    return f, l, ("%.2f" % (l / f) if f and l else "-")


MB = 1024.0
tmax = max(float(r["t_s"]) for r in rss)
steady = [r for r in rss if r["state"] == "connected" and r["resync_running"] == "0"]
print("%-8s %7s %8s %8s %8s %8s %11s %11s %6s %8s" % (
    "daemon", "samples", "RSS min", "RSS max", "RSS last", "HWM",
    "1st 1/3 max", "3rd 1/3 max", "ratio", "steady"))
for d in ("primary", "mirror"):
    v = ints(rss, d + "_rss_kb")
    h = ints(rss, d + "_hwm_kb")
    if not v:
        print("%-8s %7d" % (d, 0))
        continue
    f, l, ratio = thirds(v)
    sf, sl, sratio = thirds(ints(steady, d + "_rss_kb"))
    print("%-8s %7d %8.1f %8.1f %8.1f %8.1f %11.1f %11.1f %6s %8s" % (
        d, len(v), min(x for _, x in v) / MB, max(x for _, x in v) / MB,
        v[-1][1] / MB, max(x for _, x in h) / MB, f / MB, l / MB, ratio,
        sratio))
pids = sorted(set(r["mirror_pid"] for r in rss if r["mirror_pid"] != "-"))
print("MiB. RSS = VmRSS, HWM = VmHWM (the process's peak RSS; the mirror's: "
      "the highest of its %d processes),\nsampled from /proc/PID/status; "
      "ratio = the last third's max RSS / the first third's (flat: about <= "
      "1.1;\nnot asserted); steady = the same ratio over the samples taken "
      "while connected with no resync running." % len(pids))
for d in ("primary", "mirror"):
    h = ints(rss, d + "_hwm_kb")
    if d == "primary" and h:
        print("primary HWM over time: " + ", ".join(
            "%d s %.1f" % (t, x / MB) for t, x in h[::max(1, len(h) // 8)]
        ) + ", end %.1f MiB" % (h[-1][1] / MB))
print()

# The resyncs, from the primary's log: each "connected" line (the merge of
# the change records) and the "resync complete" line that follows it.
conns, dones = [], []
for line in log:
    m = re.search(r"connected \(mode \w+\); (.*): ours (\d+) extents, the "
                  r"mirror's (\d+), union (\d+)", line)
    if m:
        conns.append((len(dones), m.group(1), int(m.group(2)), int(m.group(3)),
                      int(m.group(4))))
    m = re.search(r"resync complete: (\d+) extents copied, (\d+) bytes of "
                  r"data, in ([\d.]+) s", line)
    if m:
        dones.append((int(m.group(1)), int(m.group(2)), float(m.group(3))))
lost = sum(1 for line in log if re.search(r"mirror [^ ]+: lost", line))

# Counters deltas: resync_extents at each stop, and at the end.
marks = [r["resync_extents_before"] for r in rst] + [final[0]]

print("%-5s %-7s %6s %7s %7s %7s %7s %8s %11s %8s  %s" % (
    "cycle", "signal", "stop s", "start s", "oos", "ours", "mirror", "union",
    "copied(log)", "seconds", "moved (counters delta)"))
for i, c in enumerate(conns):
    cyc = i  # connection 0 is the initial sync
    r = rst[cyc - 1] if 0 < cyc <= len(rst) else None
    d = dones[c[0]] if c[0] < len(dones) else None
    if cyc == 0:
        delta = "-"
    else:
        try:
            delta = str(int(marks[cyc]) - int(marks[cyc - 1]))
        except (ValueError, IndexError):
            delta = "?"
    print("%-5s %-7s %6s %7s %7s %7d %7d %8d %11s %8s  %s" % (
        cyc if cyc else "init", r["signal"] if r else "-",
        r["t_stop"] if r else "-", r["t_start"] if r else "-",
        r["oos_at_restart"] if r else "-", c[2], c[3], c[4],
        d[0] if d else "-", "%.3f" % d[2] if d else "-", delta))
print("oos = out_of_sync_extents just before the mirror was restarted; ours, "
      "mirror, union = the change records the\nprimary merged at the connect "
      "(its log); copied, seconds = its \"resync complete\" line; moved = the "
      "delta of\ncounters.resync_extents from this stop to the next one (or "
      "the end). Extents are 64 KiB.")
print("connects %d (the initial one included), lost %d, resyncs done %d "
      "(the initial one included), counters.reconnects %s" % (
          len(conns), lost, len(dones), final[2] if len(final) > 2 else "?"))
print()

try:
    fj = json.load(open(sys.argv[4]))
    for j in fj["jobs"]:
        secs = max(j.get("job_runtime", 0), 1) / 1000.0
        print("fio %-7s read %9d ops %6.1f MB/s, write %9d ops %6.1f MB/s "
              "(over %.0f s), error %d" % (
                  j["jobname"], j["read"]["total_ios"],
                  j["read"]["io_bytes"] / secs / 1e6, j["write"]["total_ios"],
                  j["write"]["io_bytes"] / secs / 1e6, secs, j.get("error", 0)))
    print("(verify's reads are its verification reads; a verify failure "
          "makes fio exit non-zero)")
except (OSError, ValueError, KeyError) as e:
    print("fio: no JSON (%s)" % e)
print()
print(images)
EOF
cat "$W/header" "$W/table" >"$OUT/$TAG.summary"

if [ -n "$FAILED" ]; then
	echo
	echo "soak: errors:$FAILED" | tee -a "$OUT/$TAG.summary"
	exit 1
fi
exit 0
