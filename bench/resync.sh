#!/bin/sh
# bench/resync.sh [--quick] [BUILD_DIR]: what a resync after an outage moves,
# and how fast, against the loopback TLS limit measured in the same run.
#
# One duet pair on 127.0.0.1 (TLS, mode MODE, 64 KiB extents, a VOL_SIZE
# volume of pseudo-random data, so that no write allocates blocks), started
# and synced once (the initial sync copies the whole volume). Then, for each
# N of RESYNC_NS:
#   1. wait until the pair is in sync; note the primary's counters;
#   2. stop the mirror (SIGTERM; STOP_SIG=KILL for SIGKILL) and wait for the
#      primary to see it go;
#   3. write N distinct random 64 KiB extents of random data through NBD
#      (fio --rw=randwrite --bs=64k --number_ios=N --randrepeat=0, random
#      map on, refill_buffers) and note out_of_sync_extents (expect N);
#   4. start the mirror, and poll the primary's status every 20 ms until it
#      is connected, no resync runs and nothing is out of sync;
#   5. read the resync off the primary's log ("connected ...: ours A
#      extents, the mirror's M, union U" and "resync complete: X extents
#      copied, Y bytes of data, in S s", S timed by the daemon from the
#      connect to the end of the copy) and off the status counters
#      (resync_extents, resync_bytes, resync_data_bytes: deltas);
#   6. cmp the two volume files (nothing writes: they must be equal).
# With CONTIG=1, one more round writes the largest N as one contiguous run
# (the resync then sends 1 MiB chunks instead of one 64 KiB extent each).
# All of it is repeated ROUNDS times (interleaved); the table gives medians.
#
# The TLS limit: a plain TLS 1.3 copy of TLS_BYTES over 127.0.0.1 with the
# same certificates and the same OpenSSL (a small python3 ssl script: 1 MiB
# writes, receiver reads into a 1 MiB buffer; one stream, like duet's link).
# Measured before each round and once after the last; the table's ratio is
# the resync's median MB/s over the median of these.
#
# It measures; it does not assert. Exit status: 0, or 1 on a real error
# (a daemon that fails to start, dies or does not resync within
# RESYNC_TIMEOUT, a fio write that fails, a MISMATCH), 77 when a tool is
# missing.
#
# Environment:
#   RESYNC_NS ["256 2048 8192"]  extents written per round (--quick: 64 256 1024)
#   VOL_SIZE [2G]        the volume (--quick: 512M); N x 64 KiB must fit
#   PREFILL [random]     random: the primary's volume starts as pseudo-random
#                        data, and the initial sync copies it all; sparse: a
#                        hole on both sides (then every write, the resync's
#                        included, allocates blocks)
#   MODE [sync]          replication mode
#   CONTIG [1]           also a contiguous round for the largest N
#   ROUNDS [3]           repetitions (--quick: 1)
#   QUIET_WAIT [0]       first wait up to this many seconds for a quiet host
#   STOP_SIG [TERM]      how the mirror is stopped: TERM or KILL
#   TLS_BYTES [2G]       bytes of the TLS copy (--quick: 512M)
#   RESYNC_TIMEOUT [300] seconds allowed for a resync (and the initial sync)
#   BENCH_TMP [/var/tmp] where the volumes go (tmpfs is refused)
#   KEEP [0]             1: keep the work directory
# Output: the table on stdout (also BUILD_DIR/bench/resync[-quick].summary),
# the rows as CSV in BUILD_DIR/bench/resync[-quick].csv and the daemons'
# logs in BUILD_DIR/bench/resync[-quick].{primary,mirror}.log.
set -u
BL_NAME=resync
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

bl_args "$@"
if [ "$QUICK" = 1 ]; then
	RESYNC_NS=${RESYNC_NS:-64 256 1024}
	VOL_SIZE=${VOL_SIZE:-512M}
	TLS_BYTES=${TLS_BYTES:-512M}
	ROUNDS=${ROUNDS:-1}
fi
ROUNDS=${ROUNDS:-3}
QUIET_WAIT=${QUIET_WAIT:-0}
RESYNC_NS=${RESYNC_NS:-256 2048 8192}
VOL_SIZE=${VOL_SIZE:-2G}
PREFILL=${PREFILL:-random}
TLS_BYTES=${TLS_BYTES:-2G}
MODE=${MODE:-sync}
CONTIG=${CONTIG:-1}
STOP_SIG=${STOP_SIG:-TERM}
RESYNC_TIMEOUT=${RESYNC_TIMEOUT:-300}

bl_setup "$B"
TAG=resync
[ "$QUICK" = 1 ] && TAG=resync-quick
VOL_BYTES=$(numfmt --from=iec "$VOL_SIZE") ||
    { echo "resync: bad VOL_SIZE '$VOL_SIZE'" >&2; exit 1; }
TLS_N=$(numfmt --from=iec "$TLS_BYTES") ||
    { echo "resync: bad TLS_BYTES '$TLS_BYTES'" >&2; exit 1; }
case $ROUNDS in '' | *[!0-9]* | 0)
	echo "resync: ROUNDS must be a positive integer" >&2; exit 1 ;;
esac
case $PREFILL in random | sparse) ;; *)
	echo "resync: PREFILL must be random or sparse" >&2; exit 1 ;;
esac
case $STOP_SIG in TERM | KILL) ;; *)
	echo "resync: STOP_SIG must be TERM or KILL" >&2; exit 1 ;;
esac
NMAX=0
for _n in $RESYNC_NS; do
	case $_n in '' | *[!0-9]* | 0)
		echo "resync: RESYNC_NS: '$_n' is not a positive number" >&2; exit 1 ;;
	esac
	[ $((_n * 65536)) -le "$VOL_BYTES" ] ||
	    { echo "resync: $_n extents of 64 KiB do not fit in $VOL_SIZE" >&2; exit 1; }
	[ "$_n" -gt "$NMAX" ] && NMAX=$_n
done

FAILED=""
D=$W/pair
ROWS=$W/rows.csv
echo "round,pattern,n,oos_extents,oos_bytes,ours,mirrors,union,log_extents,log_data_bytes,log_s,d_extents,d_bytes,d_data_bytes,wait_s,poll_s,peak_rate,images,mirror_al_commits,primary_cpu_s,mirror_cpu_s" >"$ROWS"

# The TLS copy (see the header). Prints "BYTES SECONDS VERSION CIPHER".
cat >"$W/tlscopy.py" <<'EOF'
import os, socket, ssl, sys, time
mode, port, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "server":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(d + "/mirror.pem", d + "/mirror.key")
    ctx.load_verify_locations(d + "/ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.num_tickets = 0         # as duet: no session tickets
    ls = socket.socket()
    ls.bind(("127.0.0.1", port))
    ls.listen(1)
    print("listening", flush=True)
    c, _ = ls.accept()
    s = ctx.wrap_socket(c, server_side=True)
    buf = bytearray(1 << 20)
    n = 0
    t0 = time.monotonic()       # after the handshake
    while True:
        k = s.recv_into(buf)
        if k == 0:
            break
        n += k
    t1 = time.monotonic()
    print(n, "%.3f" % (t1 - t0), s.version(), s.cipher()[0], flush=True)
    try:
        s.unwrap()              # our close_notify, for the sender's unwrap
    except (ssl.SSLError, OSError):
        pass
else:
    total = int(sys.argv[4])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(d + "/primary.pem", d + "/primary.key")
    ctx.load_verify_locations(d + "/ca.pem")
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                        server_hostname="mirror")
    mv = memoryview(os.urandom(1 << 20))
    left = total
    while left > 0:
        k = min(left, len(mv))
        s.sendall(mv[:k])
        left -= k
    try:
        s.unwrap()              # close_notify: the receiver sees a clean EOF
    except (ssl.SSLError, OSError):
        pass                    # it closed without answering in kind
    s.close()
EOF

# tls_limit LABEL: one TLS copy; appends "LABEL BYTES SECONDS VER CIPHER" to
# $W/tls.txt.
tls_limit() {
	_port=$(free_port)
	: >"$W/tls.srv"
	python3 "$W/tlscopy.py" server "$_port" "$W/certs" >"$W/tls.srv" 2>&1 &
	_spid=$!
	AUX_PIDS="$AUX_PIDS $_spid"
	_n=0
	until grep -q '^listening' "$W/tls.srv"; do
		if ! alive "$_spid" || [ $_n -ge 100 ]; then
			say "the TLS copy's receiver did not start:"
			cat "$W/tls.srv" >&2
			FAILED="$FAILED tls/$1"
			return
		fi
		sleep 0.1
		_n=$((_n + 1))
	done
	if ! timeout 600 python3 "$W/tlscopy.py" client "$_port" "$W/certs" \
	    "$TLS_N" 2>"$W/tls.cli"; then
		say "the TLS copy failed:"
		cat "$W/tls.cli" >&2
		stop_pid "$_spid" 5
		FAILED="$FAILED tls/$1"
		return
	fi
	stop_pid "$_spid" 60
	# shellcheck disable=SC2046 # four words
	set -- "$1" $(sed -n '2p' "$W/tls.srv")
	if [ "${2:-0}" != "$TLS_N" ]; then
		say "the TLS copy received ${2:-nothing}, not $TLS_N bytes"
		FAILED="$FAILED tls/$1"
		return
	fi
	echo "$*" >>"$W/tls.txt"
	say "TLS copy ($1): $2 bytes in $3 s"
}

# pwait N: poll the primary every 20 ms (straight on its status socket)
# until the mirror is connected, no resync runs and nothing is out of sync,
# RESYNC_TIMEOUT at most. Prints "WAIT_S POLL_S PEAK_RATE": from the call to
# the first poll that saw "connected", from there to the first that saw it
# done, and the highest resync.rate_bytes_per_s seen.
pwait() {
	python3 - "$D/primary.status" "$RESYNC_TIMEOUT" <<'EOF'
import json, socket, sys, time
path, limit = sys.argv[1], float(sys.argv[2])
t0 = time.monotonic()
t_conn = None
peak = 0
while time.monotonic() - t0 < limit:
    try:
        c = socket.socket(socket.AF_UNIX)
        c.connect(path)
        c.sendall(b"status\n")
        s = json.loads(c.makefile("rb").readline())
        c.close()
    except (OSError, ValueError):
        time.sleep(0.02)
        continue
    now = time.monotonic()
    peak = max(peak, s["resync"]["rate_bytes_per_s"])
    if s["connection"]["state"] == "connected":
        if t_conn is None:
            t_conn = now
        if not s["resync"]["running"] and s["out_of_sync_extents"] == 0:
            print("%.3f %.3f %d" % (t_conn - t0, now - t_conn, peak))
            sys.exit(0)
    time.sleep(0.02)
sys.exit(1)
EOF
}

ctr() {
	st "$D/primary.status" 's["counters"]["resync_extents"]' \
	    's["counters"]["resync_bytes"]' 's["counters"]["resync_data_bytes"]' \
	    's["counters"]["writes"]'
}

die_pair() {
	say "$*"
	for _f in primary mirror; do
		echo "--- $_f log (last 15 lines)" >&2
		tail -15 "$D/$_f.log" >&2
	done
	FAILED="$FAILED ${1%%:*}"
}

# round PATTERN N ROUND
round() {
	_pat=$1 _nn=$2 _rr=$3
	if ! wait_in_sync "$D" 60; then
		die_pair "$_pat/$_nn: the pair is not in sync before the round"
		return 1
	fi
	# shellcheck disable=SC2046
	set -- $(ctr)
	_e0=$1 _b0=$2 _z0=$3 _w0=$4
	_k=$(grep -c 'resync complete' "$D/primary.log")
	if [ "$STOP_SIG" = KILL ]; then
		kill_pid "$MIRROR_PID"
	elif ! stop_pid "$MIRROR_PID" 30; then
		die_pair "$_pat/$_nn: duet-mirror did not stop cleanly on SIGTERM"
		MIRROR_PID=""
		return 1
	fi
	MIRROR_PID=""
	_n=0
	while [ "$(st "$D/primary.status" 's["connection"]["state"]')" = connected ]; do
		[ $_n -ge 100 ] && break
		sleep 0.1
		_n=$((_n + 1))
	done
	case $_pat in
	random) _rw="--rw=randwrite --randrepeat=0" ;;
	contig) _rw="--rw=write" ;;
	esac
	say "$_pat/$_nn: writing $_nn extents of 64 KiB with the mirror away"
	# shellcheck disable=SC2086 # _rw is a word list
	if ! timeout 600 fio --name="w$_nn" --ioengine=nbd --uri="$NBD_URI" \
	    $_rw --bs=64k --number_ios="$_nn" --iodepth=16 --size="$VOL_BYTES" \
	    --refill_buffers --output-format=json \
	    --output="$W/fio-$_pat-$_nn.json" >"$W/fio-$_pat-$_nn.log" 2>&1; then
		die_pair "$_pat/$_nn: fio failed: $(tail -3 "$W/fio-$_pat-$_nn.log")"
		return 1
	fi
	# shellcheck disable=SC2046
	set -- $(st "$D/primary.status" 's["out_of_sync_extents"]' \
	    's["out_of_sync_bytes"]' 's["counters"]["writes"]')
	_oe=$1 _ob=$2
	[ $(($3 - _w0)) = "$_nn" ] ||
	    say "$_pat/$_nn: note: the primary counted $(($3 - _w0)) writes"
	say "$_pat/$_nn: $_oe extents out of sync; starting the mirror"
	_pc0=$(cpu_s "$PRIMARY_PID")
	if ! start_mirror "$D"; then
		die_pair "$_pat/$_nn: duet-mirror did not restart"
		return 1
	fi
	if ! _pw=$(pwait); then
		die_pair "$_pat/$_nn: no resync within $RESYNC_TIMEOUT s"
		return 1
	fi
	# The log lines of this round (the newest of each).
	_n=0
	while [ "$(grep -c 'resync complete' "$D/primary.log")" -le "$_k" ]; do
		[ $_n -ge 50 ] && break
		sleep 0.1
		_n=$((_n + 1))
	done
	_lc=$(grep 'connected (mode' "$D/primary.log" | tail -1)
	_lr=$(grep 'resync complete' "$D/primary.log" | tail -1)
	_ours=$(echo "$_lc" | sed -n 's/.*ours \([0-9]*\) extents.*/\1/p')
	_theirs=$(echo "$_lc" | sed -n "s/.*the mirror's \([0-9]*\),.*/\1/p")
	_union=$(echo "$_lc" | sed -n 's/.*union \([0-9]*\).*/\1/p')
	_lx=$(echo "$_lr" | sed -n 's/.*complete: \([0-9]*\) extents.*/\1/p')
	_ly=$(echo "$_lr" | sed -n 's/.*copied, \([0-9]*\) bytes.*/\1/p')
	_ls=$(echo "$_lr" | sed -n 's/.* in \([0-9.]*\) s.*/\1/p')
	_alc=$(st "$D/mirror.status" 's["activity_log"]["commits"]')
	_pcpu=$(awk -v a="$_pc0" -v b="$(cpu_s "$PRIMARY_PID")" 'BEGIN { printf "%.2f", b - a }')
	_mcpu=$(cpu_s "$MIRROR_PID")
	# shellcheck disable=SC2046
	set -- $(ctr)
	if cmp "$D/primary.img" "$D/mirror.img" >"$W/cmp.out" 2>&1; then
		_img=match
	else
		_img=MISMATCH
		say "$_pat/$_nn: MISMATCH: $(head -1 "$W/cmp.out")"
		FAILED="$FAILED $_pat/$_nn/mismatch"
		KEEP=1
	fi
	# shellcheck disable=SC2086 # three numbers
	echo "$_rr,$_pat,$_nn,$_oe,$_ob,${_ours:-?},${_theirs:-?},${_union:-?},${_lx:-?},${_ly:-?},${_ls:-?},$(($1 - _e0)),$(($2 - _b0)),$(($3 - _z0)),$(echo $_pw | tr ' ' ,),$_img,${_alc:-?},$_pcpu,$_mcpu" >>"$ROWS"
	say "$_pat/$_nn: resync moved $(($1 - _e0)) extents, $(($2 - _b0)) bytes in ${_ls:-?} s; images $_img"
}

# ---- main

# shellcheck disable=SC2046 # two numbers
set -- $(quiet_wait "$QUIET_WAIT")
{
	echo "== duet resync bench: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc $(nproc), $(uname -sr)"
	echo "   $DUET_VERSION: binaries from $B, built $BUILT"
	echo "   $(fio --version), python3 $(python3 -c 'import ssl, sys
print(sys.version.split()[0] + ", " + ssl.OPENSSL_VERSION)')"
	echo "   volume $VOL_SIZE ($PREFILL) in $BENCH_TMP, extent 64 KiB, mode $MODE;" \
	    "N = $RESYNC_NS$([ "$CONTIG" = 1 ] && echo " (+ contiguous $NMAX)");" \
	    "mirror stopped with SIG$STOP_SIG; $ROUNDS round(s)"
	echo "   host before the start: $1 % busy, $2 % steal over 3 s"
	echo
} >"$W/header"
cat "$W/header"

duet_confs "$D" "$VOL_SIZE" "$MODE"
[ "$PREFILL" = random ] && { mkvol_random "$D/primary.img" "$VOL_BYTES" || exit 1; }
if ! start_mirror "$D" || ! start_primary "$D"; then
	die_pair "start"
	exit 1
fi
if ! wait_in_sync "$D" "$RESYNC_TIMEOUT"; then
	die_pair "no initial sync"
	exit 1
fi
say "initial sync: $(sed -n 's/.*resync complete: //p' "$D/primary.log" | head -1)"

ROUND_FAILED=""
_r=1
while [ $_r -le "$ROUNDS" ] && [ -z "$ROUND_FAILED" ]; do
	tls_limit "r$_r"
	for _n in $RESYNC_NS; do
		round random "$_n" $_r || { ROUND_FAILED=1; break; }
	done
	[ "$CONTIG" = 1 ] && [ -z "$ROUND_FAILED" ] && round contig "$NMAX" $_r
	_r=$((_r + 1))
done
tls_limit end

if [ -n "$PRIMARY_PID" ]; then
	stop_pid "$PRIMARY_PID" 60 || die_pair "duet-primary: exit $? on SIGTERM"
	PRIMARY_PID=""
fi
if [ -n "$MIRROR_PID" ]; then
	stop_pid "$MIRROR_PID" 30 || die_pair "duet-mirror: exit $? on SIGTERM"
	MIRROR_PID=""
fi
cp "$D/primary.log" "$OUT/$TAG.primary.log"
cp "$D/mirror.log" "$OUT/$TAG.mirror.log"
cp "$ROWS" "$OUT/$TAG.csv"

python3 - "$ROWS" "$W/tls.txt" <<'EOF' | tee "$W/table"
import csv, math, os, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
tls = []
if os.path.exists(sys.argv[2]):
    for line in open(sys.argv[2]):
        lab, n, secs, ver, ciph = line.split()
        tls.append((lab, int(n) / float(secs) / 1e6, ver, ciph))
limit = statistics.median(t[1] for t in tls) if tls else None


def num(x):
    try:
        return float(x)
    except ValueError:
        return math.nan


def med(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan


groups = {}
for r in rows:
    r["secs"] = num(r["log_s"])
    r["mbps"] = int(r["d_bytes"]) / r["secs"] / 1e6 if r["secs"] > 0 else math.nan
    groups.setdefault((r["pattern"], int(r["n"])), []).append(r)


def same(rs, k):
    v = sorted(set(r[k] for r in rs))
    return v[0] if len(v) == 1 else "/".join(v)


print("%-7s %6s %9s %9s %11s %11s %8s %8s %8s %6s %s" % (
    "pattern", "N", "out-sync", "moved", "bytes", "data", "seconds", "MB/s",
    "best", "x TLS", "images"))
for (pat, n), rs in groups.items():
    secs, mbps = med([r["secs"] for r in rs]), med([r["mbps"] for r in rs])
    best = max((r["mbps"] for r in rs if not math.isnan(r["mbps"])),
               default=math.nan)
    imgs = [r["images"] for r in rs]
    print("%-7s %6d %9s %9s %11s %11s %8.3f %8.1f %8.1f %6s %s" % (
        pat, n, same(rs, "oos_extents"), same(rs, "d_extents"),
        same(rs, "d_bytes"), same(rs, "d_data_bytes"), secs, mbps, best,
        "%.2f" % (mbps / limit) if limit else "-",
        "MISMATCH" if "MISMATCH" in imgs else "match"))
print("out-sync = out_of_sync_extents with the mirror away; moved, bytes, data = "
      "deltas of counters.resync_extents,\n"
      "resync_bytes, resync_data_bytes (one value: the same in every round); "
      "seconds = the primary's own \"resync\ncomplete ... in S s\" (connect to "
      "done), median over the rounds; MB/s = bytes / seconds (10^6 B), median;\n"
      "best = the best round; x TLS = median MB/s / the median TLS limit below; "
      "images = cmp after each round.")
print()
if tls:
    print("TLS limit: median %.0f MB/s (%s), one %s stream, %s, python3 ssl, "
          "1 MiB writes" % (limit, ", ".join("%s %.0f" % (t[0], t[1]) for t in tls),
                           tls[0][2], tls[0][3]))
else:
    print("TLS limit: not measured")
print()
print("%-5s %-7s %6s %6s %6s %6s %8s %7s %7s %6s %6s %11s %5s %5s" % (
    "round", "pattern", "N", "ours", "mirror", "union", "log ext",
    "seconds", "MB/s", "wait s", "poll s", "peak rate", "P cpu", "M cpu"))
for r in rows:
    print("%-5s %-7s %6s %6s %6s %6s %8s %7.3f %7.1f %6s %6s %6.1f MB/s %5s %5s" % (
        r["round"], r["pattern"], r["n"], r["ours"], r["mirrors"], r["union"],
        r["log_extents"], r["secs"], r["mbps"], r["wait_s"], r["poll_s"],
        int(r["peak_rate"]) / 1e6, r["primary_cpu_s"], r["mirror_cpu_s"]))
print("ours, mirror, union = the change records the primary merged at the "
      "connect (its log); log extents = \"resync\ncomplete: X extents\"; "
      "wait s = mirror started to \"connected\" seen (the primary's reconnect "
      "backoff);\npoll s = connected to done, seen by 20 ms polls; peak rate = "
      "highest resync.rate_bytes_per_s the polls saw;\n"
      "P cpu = the primary's CPU seconds from the mirror's start to the end of "
      "the resync, M cpu = the restarted\nmirror's, all of its life until then "
      "(user + system).")
EOF
cat "$W/header" "$W/table" >"$OUT/$TAG.summary"

if [ -n "$FAILED" ]; then
	echo
	echo "resync: errors:$FAILED"
	exit 1
fi
exit 0
