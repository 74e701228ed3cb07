#!/bin/sh
# bench/e2e.sh [BUILD_DIR]: end-to-end throughput and latency of duet against
# an unreplicated baseline, with the same fio jobs for every system.
#
# Systems (in this order; each gets its own fresh volumes):
#   nbdkit        nbdkit's file plugin on a Unix socket: no replication (the
#                 baseline every ratio is taken against)
#   duet-sync     duet-primary (NBD on a Unix socket) replicating over TLS on
#   duet-memsync  127.0.0.1 to duet-mirror, in each replication mode; jobs
#   duet-async    start only once the primary has logged "sync complete"
#
# Jobs (fio, ioengine=nbd, time_based, RUNTIME s each, norandommap,
# randrepeat=1, lat_percentiles=1; latency = fio "lat", submit to complete):
#   a_randw4k_qd32       4 KiB random write, iodepth 32
#   b_seqw64k_qd8        64 KiB sequential write, iodepth 8
#   c_randw4k_qd1_fsync  4 KiB random write, iodepth 1, fsync=1: an NBD FLUSH
#                        after every write (fio's nbd engine refuses
#                        fdatasync=1). One FLUSH (qemu-io -c flush) goes first,
#                        so that the pages a and b dirtied are not charged to it.
#   d_randr4k_qd32       4 KiB random read, iodepth 32 (after the writes)
#
# After each duet system: SIGTERM to the primary (it answers what is in flight,
# waits for the mirror's acks and says goodbye), then SIGTERM to the mirror,
# then cmp of the two volume files: VERIFY MATCH or MISMATCH.
#
# It measures; it does not assert. The targets of issue 6 are printed with
# met/MISSED for reference only. Exit status: 0, or 1 on a real error (a
# MISMATCH, a daemon that fails to start, crashes, hangs or exits non-zero,
# a fio job that fails), 77 when a needed tool is not installed.
#
# Environment:
#   RUNTIME [10]        seconds per fio job
#   VOL_SIZE [1G]       volume size (K/M/G suffixes)
#   PREFILL [random]    random: the volumes start as 1 GiB of pseudo-random
#                       data (so the initial sync copies real data and the
#                       writes do not allocate blocks); sparse: a hole
#   E2E_TMP [/var/tmp]  where the volumes go (tmpfs is refused)
#   E2E_SYSTEMS ["nbdkit sync memsync async"]   subset/order of systems
#   E2E_JOBS ["a b c d"] subset of jobs
#   DUET_GROUPS [4] DUET_TASKS [4] DUET_RANGE [256M]   the engine's shape
#                       (mirror.task_groups, .tasks_per_group, .range_size;
#                       the same on both daemons)
#   SETTLE [3]          seconds of pause (after a sync) between systems
#   QUIET_WAIT [0]      wait up to this many seconds, before starting, for a
#                       5 s window in which the host is at most 10 % busy
#                       (the machine may be shared; the header says how busy
#                       it was either way)
#   SYNC_TIMEOUT [300]  seconds allowed for the initial sync
#   KEEP [0]            1: keep the work directory (volumes, logs, fio JSON)
#
# Smoke test: RUNTIME=3 VOL_SIZE=256M bench/e2e.sh
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-$TOP/build}
case $B in /*) ;; *) B=$PWD/$B ;; esac
RUNTIME=${RUNTIME:-10}
VOL_SIZE=${VOL_SIZE:-1G}
PREFILL=${PREFILL:-random}
E2E_TMP=${E2E_TMP:-/var/tmp}
E2E_SYSTEMS=${E2E_SYSTEMS:-nbdkit sync memsync async}
E2E_JOBS=${E2E_JOBS:-a b c d}
DUET_GROUPS=${DUET_GROUPS:-4}
DUET_TASKS=${DUET_TASKS:-4}
DUET_RANGE=${DUET_RANGE:-256M}
SETTLE=${SETTLE:-3}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-300}
KEEP=${KEEP:-0}
QUIET_WAIT=${QUIET_WAIT:-0}

PRIMARY=$B/duet-primary
MIRROR=$B/duet-mirror

say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

for c in fio nbdkit qemu-io python3 openssl cmp numfmt ss; do
	command -v "$c" >/dev/null 2>&1 ||
	    { echo "SKIP: e2e bench: $c is not installed"; exit 77; }
done
for c in "$PRIMARY" "$MIRROR"; do
	[ -x "$c" ] || { echo "e2e: $c is not built (make)" >&2; exit 1; }
done
VOL_BYTES=$(numfmt --from=iec "$VOL_SIZE") ||
    { echo "e2e: bad VOL_SIZE '$VOL_SIZE'" >&2; exit 1; }
case $(stat -f -c %T "$E2E_TMP" 2>/dev/null) in
tmpfs | ramfs | "")
	echo "e2e: $E2E_TMP is missing or in memory; set E2E_TMP to a disk" >&2
	exit 1 ;;
esac

W=$(mktemp -d "$E2E_TMP/duet-e2e.XXXXXX") || exit 1
R=$W/results
mkdir -p "$R" "$W/bin"
# Every system runs the binaries as they were at the start, even if the
# build directory is rebuilt meanwhile.
cp "$PRIMARY" "$MIRROR" "$W/bin/" || { rm -rf "$W"; exit 1; }
PRIMARY_BUILT=$(date -u -r "$PRIMARY" '+%Y-%m-%d %H:%M:%S UTC')
PRIMARY=$W/bin/duet-primary
MIRROR=$W/bin/duet-mirror

# ---- processes: every one we start is known by its pid, and only those
# pids are ever signalled.
NBDKIT_PID="" PRIMARY_PID="" MIRROR_PID="" FIO_PID=""

alive() {
	kill -0 "$1" 2>/dev/null || return 1
	case $(ps -o stat= -p "$1" 2>/dev/null) in
	Z*) return 1 ;;
	esac
	return 0
}

# stop_pid PID SECS: SIGTERM, wait up to SECS, then SIGKILL. Returns the
# process's exit status, or 124 if it had to be killed.
stop_pid() {
	_p=$1 _n=0
	kill -TERM "$_p" 2>/dev/null
	while alive "$_p" && [ $_n -lt $(($2 * 10)) ]; do
		sleep 0.1
		_n=$((_n + 1))
	done
	if alive "$_p"; then
		say "pid $_p still running $2 s after SIGTERM: SIGKILL"
		kill -KILL "$_p" 2>/dev/null
		wait "$_p" 2>/dev/null
		return 124
	fi
	wait "$_p"
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	_rc=$?
	trap - EXIT INT TERM HUP
	for _p in $FIO_PID $PRIMARY_PID $MIRROR_PID $NBDKIT_PID; do
		alive "$_p" && stop_pid "$_p" 10
	done
	if [ "$KEEP" = 1 ]; then
		say "kept $W"
	else
		rm -rf "$W"
	fi
	exit "$_rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# cpu_s PID: user + system CPU seconds of a process so far.
cpu_s() {
	awk -v hz="$(getconf CLK_TCK)" \
	    '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' \
	    "/proc/$1/stat" 2>/dev/null || echo nan
}

# host_cpu: "total idle iowait steal" jiffies, all CPUs.
host_cpu() {
	awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i
	    print t, $5, $6, $9 }' /proc/stat
}

# ---- volumes

mkvol() {
	rm -f "$1"
	case $PREFILL in
	random)
		# AES-CTR keystream: fast, reproducible, incompressible.
		openssl enc -aes-128-ctr -nosalt \
		    -K 6475657465326562656e636800000000 \
		    -iv 00000000000000000000000000000000 </dev/zero 2>/dev/null |
		    head -c "$VOL_BYTES" >"$1" ;;
	sparse)
		truncate -s "$VOL_BYTES" "$1" ;;
	*)
		echo "e2e: PREFILL must be random or sparse" >&2
		exit 1 ;;
	esac
	[ "$(stat -c %s "$1")" = "$VOL_BYTES" ] ||
	    { echo "e2e: cannot create $1" >&2; exit 1; }
	sync "$1"
}

# ---- fio

FAILED=""

# run_jobs SYSTEM URI: every job of E2E_JOBS, JSON in $R/SYSTEM.JOB.json.
run_jobs() {
	for _j in $E2E_JOBS; do
		case $_j in
		a) _name=a_randw4k_qd32 _args="--rw=randwrite --bs=4k --iodepth=32" ;;
		b) _name=b_seqw64k_qd8 _args="--rw=write --bs=64k --iodepth=8" ;;
		c) _name=c_randw4k_qd1_fsync
		   _args="--rw=randwrite --bs=4k --iodepth=1 --fsync=1"
		   timeout 60 qemu-io -f raw -c flush "$2" >>"$R/$1.qemu-io.log" 2>&1 ||
		       say "$1: the pre-flush (qemu-io -c flush) failed" ;;
		d) _name=d_randr4k_qd32 _args="--rw=randread --bs=4k --iodepth=32" ;;
		*) echo "e2e: unknown job '$_j'" >&2; exit 1 ;;
		esac
		say "$1: $_name"
		# fio prints "connected to NBD server" on stdout: JSON to a file.
		# shellcheck disable=SC2086 # _args is a word list
		timeout $((RUNTIME + 60)) fio --name="$_name" --ioengine=nbd \
		    --uri="$2" --time_based --runtime="$RUNTIME" \
		    --norandommap --randrepeat=1 --lat_percentiles=1 \
		    $_args --output-format=json --output="$R/$1.$_j.json" \
		    >"$R/$1.$_j.log" 2>&1 &
		FIO_PID=$!
		wait "$FIO_PID"
		_rc=$?
		FIO_PID=""
		if [ $_rc -ne 0 ]; then
			say "$1: fio $_name failed (exit $_rc):"
			tail -5 "$R/$1.$_j.log" >&2
			rm -f "$R/$1.$_j.json"
			FAILED="$FAILED $1/$_name"
		fi
	done
}

# info SYSTEM KEY VALUE: a detail for the report.
info() { echo "$2=$3" >>"$R/$1.info"; }

# host_info SYSTEM BEFORE: host CPU over the jobs (see host_cpu).
host_info() {
	info "$1" host "$2 $(host_cpu)"
	info "$1" hz "$(getconf CLK_TCK)"
	info "$1" ncpu "$(grep -c '^cpu[0-9]' /proc/stat)"
}

# ---- nbdkit

run_nbdkit() {
	_d=$W/nbdkit
	mkdir -p "$_d"
	mkvol "$_d/vol.img"
	# Started from this shell, not from a subshell: nbdkit -f arms
	# PR_SET_PDEATHSIG and would die with a short-lived parent.
	nbdkit -f -U "$_d/nbd.sock" file file="$_d/vol.img" \
	    </dev/null >"$_d/nbdkit.log" 2>&1 &
	NBDKIT_PID=$!
	_n=0
	until [ -S "$_d/nbd.sock" ]; do
		if ! alive "$NBDKIT_PID" || [ $_n -ge 100 ]; then
			say "nbdkit did not start:"; tail -5 "$_d/nbdkit.log" >&2
			FAILED="$FAILED nbdkit/start"
			stop_pid "$NBDKIT_PID" 5; NBDKIT_PID=""
			return
		fi
		sleep 0.1
		_n=$((_n + 1))
	done
	_h0=$(host_cpu) _c0=$(cpu_s "$NBDKIT_PID")
	run_jobs nbdkit "nbd+unix:///?socket=$_d/nbd.sock"
	info nbdkit cpu_server "$(awk -v a="$_c0" -v b="$(cpu_s "$NBDKIT_PID")" \
	    'BEGIN { printf "%.1f", b - a }')"
	host_info nbdkit "$_h0"
	alive "$NBDKIT_PID" || FAILED="$FAILED nbdkit/died"
	stop_pid "$NBDKIT_PID" 10
	NBDKIT_PID=""
	[ "$KEEP" = 1 ] || rm -f "$_d/vol.img"
}

# ---- duet

free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# duet_conf FILE SIDE(primary|mirror) MODE PORT
duet_conf() {
	_peer=mirror
	[ "$2" = mirror ] && _peer=primary
	{
		cat <<EOF
# bench/e2e.sh: duet-$2, mode $3
volume = {
  name = "vol";
  path = "$_dd/$2.img";
  size = "$VOL_BYTES";
  metadata = "$_dd/$2.meta";
};
mirror = {
  listen = "127.0.0.1:$4";
  task_groups = $DUET_GROUPS;
  tasks_per_group = $DUET_TASKS;
  range_size = "$DUET_RANGE";
};
tls = {
  ca = "$W/certs/ca.pem";
  cert = "$W/certs/$2.pem";
  key = "$W/certs/$2.key";
  peer_name = "$_peer";
};
status = {
  socket = "$_dd/$2.status";
};
EOF
		[ "$2" = primary ] && cat <<EOF
primary = {
  nbd_socket = "$_dd/nbd.sock";
  mirror = "127.0.0.1:$4";
  mode = "$3";
};
EOF
	} >"$1"
}

duet_fail() {
	say "duet-$1: $2"
	for _f in primary mirror; do
		[ -s "$_dd/$_f.log" ] || continue
		echo "--- $_f log (last 15 lines)" >&2
		tail -15 "$_dd/$_f.log" >&2
	done
	FAILED="$FAILED duet-$1/$3"
	info "duet-$1" verify "n/a ($2)"
}

# same_vols SYSTEM KEY: cmp of $_dd/primary.img and $_dd/mirror.img, the
# verdict recorded as KEY; false on a mismatch.
same_vols() {
	if cmp "$_dd/primary.img" "$_dd/mirror.img" >"$_dd/cmp.out" 2>&1; then
		info "$1" "$2" "MATCH ($VOL_BYTES bytes, cmp)"
		return 0
	fi
	_blocks=$(python3 - "$_dd/primary.img" "$_dd/mirror.img" <<'EOF'
import sys
n = tot = 0
with open(sys.argv[1], "rb") as a, open(sys.argv[2], "rb") as b:
    while True:
        x, y = a.read(1 << 20), b.read(1 << 20)
        if not x and not y:
            break
        for i in range(0, max(len(x), len(y)), 4096):
            tot += 1
            n += x[i:i + 4096] != y[i:i + 4096]
print("%d of %d 4 KiB blocks differ" % (n, tot))
EOF
)
	info "$1" "$2" "MISMATCH ($(head -1 "$_dd/cmp.out"); $_blocks)"
	FAILED="$FAILED $1/$2"
	return 1
}

# run_duet MODE
run_duet() {
	_m=$1 _s=duet-$1 _dd=$W/$1
	mkdir -p "$_dd"
	[ -f "$W/certs/ca.pem" ] ||
	    sh "$TOP/tests/certs.sh" "$W/certs" mirror primary ||
	    { duet_fail "$_m" "tests/certs.sh failed" certs; return; }
	_port=$(free_port)
	duet_conf "$_dd/mirror.conf" mirror "$_m" "$_port"
	duet_conf "$_dd/primary.conf" primary "$_m" "$_port"
	mkvol "$_dd/primary.img"	# the mirror starts with no volume

	"$MIRROR" -c "$_dd/mirror.conf" -f </dev/null >"$_dd/mirror.log" 2>&1 &
	MIRROR_PID=$!
	_n=0
	until [ -n "$(ss -Htln "sport = :$_port" 2>/dev/null)" ]; do
		if ! alive "$MIRROR_PID" || [ $_n -ge 100 ]; then
			duet_fail "$_m" "duet-mirror did not start" start
			stop_pid "$MIRROR_PID" 5; MIRROR_PID=""
			return
		fi
		sleep 0.1
		_n=$((_n + 1))
	done
	"$PRIMARY" -c "$_dd/primary.conf" -f </dev/null >"$_dd/primary.log" 2>&1 &
	PRIMARY_PID=$!
	_n=0
	until grep -q 'sync complete' "$_dd/primary.log"; do
		if ! alive "$PRIMARY_PID" || ! alive "$MIRROR_PID" ||
		    [ $_n -ge $((SYNC_TIMEOUT * 10)) ]; then
			duet_fail "$_m" "no \"sync complete\" (daemon gone or \
${SYNC_TIMEOUT} s passed)" sync
			stop_pid "$PRIMARY_PID" 10; PRIMARY_PID=""
			stop_pid "$MIRROR_PID" 10; MIRROR_PID=""
			return
		fi
		sleep 0.1
		_n=$((_n + 1))
	done
	info "$_s" initial_sync "$(sed -n 's/.*sync complete: //p' "$_dd/primary.log" |
	    head -1)"
	# No client has written yet and every sync chunk waits for APPLIED:
	# the mirror's file must already equal the primary's. (Job b rewrites
	# most of the volume, so the check after the stop alone could miss a
	# sync that copied the wrong bytes.)
	same_vols "$_s" verify_sync

	_h0=$(host_cpu) _p0=$(cpu_s "$PRIMARY_PID") _q0=$(cpu_s "$MIRROR_PID")
	run_jobs "$_s" "nbd+unix:///vol?socket=$_dd/nbd.sock"
	info "$_s" cpu_primary "$(awk -v a="$_p0" -v b="$(cpu_s "$PRIMARY_PID")" \
	    'BEGIN { printf "%.1f", b - a }')"
	info "$_s" cpu_mirror "$(awk -v a="$_q0" -v b="$(cpu_s "$MIRROR_PID")" \
	    'BEGIN { printf "%.1f", b - a }')"
	host_info "$_s" "$_h0"

	alive "$PRIMARY_PID" || duet_fail "$_m" "duet-primary died" crash
	alive "$MIRROR_PID" || duet_fail "$_m" "duet-mirror died" crash
	_t0=$(date +%s.%N)
	stop_pid "$PRIMARY_PID" 60
	_prc=$?
	PRIMARY_PID=""
	info "$_s" stop_primary_s "$(awk -v a="$_t0" -v b="$(date +%s.%N)" \
	    'BEGIN { printf "%.1f", b - a }')"
	stop_pid "$MIRROR_PID" 30
	_mrc=$?
	MIRROR_PID=""
	if [ $_prc -ne 0 ] || [ $_mrc -ne 0 ]; then
		duet_fail "$_m" "stop: duet-primary exit $_prc, duet-mirror exit \
$_mrc (124: killed after the timeout)" stop
	fi
	if ! same_vols "$_s" verify; then
		KEEP_DIRS="$KEEP_DIRS $_dd"	# volumes and logs, for a post-mortem
		return
	fi
	[ "$KEEP" = 1 ] || rm -f "$_dd/primary.img" "$_dd/mirror.img"
}

# busy_pct SECS: the host's busy percentage (not idle, not iowait) over SECS.
busy_pct() {
	_a=$(host_cpu)
	sleep "$1"
	echo "$_a $(host_cpu)" | awk '{ t = $5 - $1; if (t < 1) t = 1
	    printf "%.0f %.0f\n", 100 * (t - ($6 - $2) - ($7 - $3)) / t,
	    100 * ($8 - $4) / t }'
}

# ---- main

KEEP_DIRS=""
_t=0
while :; do
	# shellcheck disable=SC2046 # two numbers
	set -- $(busy_pct 5)
	[ "$1" -le 10 ] || [ $_t -ge "$QUIET_WAIT" ] && break
	say "host $1 % busy; waiting for a quiet 5 s (QUIET_WAIT=$QUIET_WAIT)"
	_t=$((_t + 5))
done
{
	echo "== duet e2e bench: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc $(nproc), $(uname -sr)"
	echo "   duet $(git -C "$TOP" describe --always --dirty 2>/dev/null || echo '?'):" \
	    "binaries from $B, built $PRIMARY_BUILT"
	echo "   $(fio --version), $(nbdkit --version), $(qemu-io --version | head -1)"
	echo "   RUNTIME ${RUNTIME} s per job, volume $VOL_SIZE ($PREFILL) in $E2E_TMP" \
	    "($(findmnt -no FSTYPE -T "$E2E_TMP" 2>/dev/null || stat -f -c %T "$E2E_TMP")," \
	    "$(df --output=source "$E2E_TMP" | tail -1)); duet engine" \
	    "${DUET_GROUPS}x${DUET_TASKS}, range $DUET_RANGE, TLS on 127.0.0.1"
	echo "   host before the start: $1 % busy, $2 % steal over 5 s"
	echo
} >"$R/header"
cat "$R/header"

for sys in $E2E_SYSTEMS; do
	sync
	sleep "$SETTLE"
	say "=== $sys"
	case $sys in
	nbdkit) run_nbdkit ;;
	sync | memsync | async) run_duet "$sys" ;;
	*) echo "e2e: unknown system '$sys'" >&2; exit 1 ;;
	esac
done

# shellcheck disable=SC2086 # E2E_SYSTEMS is a word list
python3 - "$R" "$E2E_JOBS" $E2E_SYSTEMS <<'EOF'
import json, math, os, sys

rdir, jobs, systems = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
systems = [s if s == "nbdkit" else "duet-" + s for s in systems]
names = {"a": "a_randw4k_qd32", "b": "b_seqw64k_qd8",
         "c": "c_randw4k_qd1_fsync", "d": "d_randr4k_qd32"}

def pct(lat, p):
    v = (lat or {}).get("percentile", {}).get(p)
    return v / 1000.0 if v is not None else math.nan

res = {}
for s in systems:
    for j in jobs:
        path = os.path.join(rdir, "%s.%s.json" % (s, j))
        if not os.path.exists(path):
            continue
        try:
            d = json.load(open(path))
        except ValueError:
            continue
        job = d["jobs"][0]
        if job.get("error"):
            continue
        st = job["read"] if job["read"]["total_ios"] > 0 else job["write"]
        lat = st["lat_ns"] if st["lat_ns"].get("percentile") else st["clat_ns"]
        r = {"iops": st["iops"], "mbps": st["bw_bytes"] / 1e6,
             "p50": pct(lat, "50.000000"), "p99": pct(lat, "99.000000"),
             "f50": math.nan, "f99": math.nan}
        sy = job.get("sync") or {}
        if sy.get("total_ios"):
            r["f50"] = pct(sy.get("lat_ns"), "50.000000")
            r["f99"] = pct(sy.get("lat_ns"), "99.000000")
        r["fio_cpu"] = ((job.get("usr_cpu", 0) + job.get("sys_cpu", 0)) / 100.0
                        * job.get("job_runtime", 0) / 1000.0)
        res[s, j] = r

def f(x, w, prec=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "%*s" % (w, "-")
    return "%*.*f" % (w, prec, x)

def ratio(s, j):
    b, x = res.get(("nbdkit", j)), res.get((s, j))
    if b and x and b["iops"] > 0:
        return x["iops"] / b["iops"]
    return None

print("%-20s %-13s %8s %8s %8s %8s %9s %9s %9s" % (
    "job", "system", "IOPS", "MB/s", "p50 us", "p99 us",
    "flush p50", "flush p99", "x nbdkit"))
for j in jobs:
    first = True
    for s in systems:
        r = res.get((s, j))
        lab = names.get(j, j) if first else ""
        first = False
        if r is None:
            print("%-20s %-13s %8s" % (lab, s, "FAILED"))
            continue
        print("%-20s %-13s %s %s %s %s %s %s %s" % (
            lab, s, f(r["iops"], 8), f(r["mbps"], 8, 1), f(r["p50"], 8),
            f(r["p99"], 8), f(r["f50"], 9), f(r["f99"], 9),
            f(ratio(s, j), 9, 2)))
print("x nbdkit = IOPS (so also MB/s) of the system / IOPS of nbdkit; "
      "latencies are fio lat (submit to complete),\nflush = the FLUSH after "
      "each write in job c.")
print()

targets = [("duet-sync", "a", 0.45), ("duet-sync", "b", 0.40),
           ("duet-sync", "c", 0.70), ("duet-async", "a", 0.60)]
parts = []
for s, j, t in targets:
    r = ratio(s, j)
    got = "not run" if r is None else "%.2f %s" % (r, "met" if r >= t else "MISSED")
    parts.append("%s %s >= %.2fx: %s" % (s[5:], j, t, got))
print("targets (issue 6, for reference; never fatal): " + "; ".join(parts))
print()

for s in systems:
    info = {}
    p = os.path.join(rdir, s + ".info")
    if os.path.exists(p):
        for line in open(p):
            k, _, v = line.rstrip("\n").partition("=")
            info[k] = v
    det = []
    if "initial_sync" in info:
        det.append("initial sync: " + info["initial_sync"].split(";")[0])
    keys = [k for k in ("cpu_server", "cpu_primary", "cpu_mirror") if k in info]
    fio_cpu = sum(res[s, j]["fio_cpu"] for j in jobs if (s, j) in res)
    if keys:
        det.append("CPU s during the jobs: " + ", ".join(
            "%s %s" % (k[4:], info[k]) for k in keys).replace("server", "nbdkit")
            + ", fio %.1f" % fio_cpu)
    if "host" in info:
        a = [int(x) for x in info["host"].split()]
        hz, ncpu = float(info.get("hz", 100)), int(info.get("ncpu", 1))
        tot = max(a[4] - a[0], 1)
        busy = tot - (a[5] - a[1]) - (a[6] - a[2])
        wall = tot / hz / ncpu
        ours = fio_cpu + sum(float(info[k]) for k in keys)
        det.append("host: busy %.0f%%, iowait %.0f%%, steal %.0f%%, other "
                   "processes %.2f CPUs" % (
            100.0 * busy / tot, 100.0 * (a[6] - a[2]) / tot,
            100.0 * (a[7] - a[3]) / tot, max(busy / hz - ours, 0) / wall))
    if "stop_primary_s" in info:
        det.append("primary stopped in %s s" % info["stop_primary_s"])
    print("%-13s %s" % (s, "; ".join(det)))
    if "verify_sync" in info:
        print("VERIFY %-13s after the initial sync: %s" % (s, info["verify_sync"]))
    if "verify" in info:
        print("VERIFY %-13s after the jobs and a clean stop: %s" % (s, info["verify"]))
EOF

rc=0
if [ -n "$FAILED" ]; then
	echo
	echo "e2e: errors:$FAILED"
	rc=1
fi
if [ -n "$KEEP_DIRS" ] && [ "$KEEP" != 1 ]; then
	echo "e2e: kept for a post-mortem (volumes, logs):$KEEP_DIRS"
	KEEP=1	# cleanup then leaves $W alone
fi
exit $rc
