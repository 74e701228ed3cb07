#!/bin/sh
# bench/e2e.sh [--quick] [BUILD_DIR]: end-to-end throughput and latency of duet
# against an unreplicated baseline and against QEMU's active mirror, with the
# same fio jobs, the same volume size and the same disk for every system.
#
# Systems (in this order; each gets its own fresh volumes):
#   nbdkit          nbdkit's file plugin on a Unix socket: no replication (the
#                   baseline every "x nbdkit" ratio is taken against)
#   duet-sync       duet-primary (NBD on a Unix socket) replicating over TLS on
#   duet-memsync    127.0.0.1 to duet-mirror, in each replication mode; jobs
#   duet-async      start only once the primary has logged "sync complete"
#   qemu-mirror     QEMU's active mirror: a primary qemu-storage-daemon exports
#                   its volume over NBD on a Unix socket and runs blockdev-mirror
#                   sync=full copy-mode=write-blocking to a second qemu-storage-
#                   daemon's NBD export, over TLS (tls-creds-x509, verify-peer)
#                   on 127.0.0.1; jobs start once the job is READY. A write
#                   completes once it is in the primary's file and the mirror
#                   has acknowledged it. (the "x qemu" reference for a, b, d)
#   qemu-mirror-wt  the same with the mirror's export writethrough=on: QEMU's
#                   mirror never forwards a FLUSH, so this is the variant whose
#                   flushes reach the mirror's disk (every mirrored write is
#                   fdatasync'ed there). Job c only, by default; the "x qemu"
#                   reference for c.
#
# Jobs (fio, ioengine=nbd, time_based, RUNTIME s each, norandommap,
# randrepeat=1, lat_percentiles=1; latency = fio "lat", submit to complete):
#   a_randw4k_qd32       4 KiB random write, iodepth 32
#   b_seqw64k_qd8        64 KiB sequential write, iodepth 8
#   c_randw4k_qd1_fsync  4 KiB random write, iodepth 1, fsync=1: an NBD FLUSH
#                        after every write (fio's nbd engine refuses
#                        fdatasync=1). A sync(1) and one FLUSH (qemu-io -c
#                        flush) go first, so that the pages a and b dirtied
#                        are not charged to it, on either side (QEMU's mirror
#                        never forwards a FLUSH).
#   d_randr4k_qd32       4 KiB random read, iodepth 32 (after the writes)
#
# With job c, after the rounds: bench/flushfloor on E2E_TMP (one 4 KiB write
# and fdatasync at a time, against two files written and fdatasync'ed at
# once; no network), and from it and nbdkit's job c the most any replicator
# whose FLUSH reaches both copies on this one disk could reach, x nbdkit;
# then the same for flushfloor's plain-TCP peer (the second file in another
# process, a loopback round trip away, blocking reads): a reference point,
# not a floor, since polling can beat its wake-ups.
#
# Verification, for every replicating system: cmp of the two volume files
# after the initial sync (before any client write) and after the jobs and a
# clean stop (duet: SIGTERM to the primary, which answers what is in flight
# and waits for the mirror's acks, then to the mirror; QEMU: block-job-cancel
# of the READY job, which completes it with the target in sync, blockdev-del
# of the NBD target, then "quit" to both daemons). The table's "mirror"
# column says match or MISMATCH.
#
# It measures; it does not assert. The targets of issue 6 are printed with
# met/MISSED for reference only. Exit status: 0, or 1 on a real error (a
# MISMATCH, a daemon that fails to start, crashes, hangs or exits non-zero,
# a fio job that fails), 77 when a needed tool is not installed. Without
# qemu-storage-daemon (Debian: qemu-system-common, which tests/deps.sh
# installs) the two QEMU systems are skipped, with a note.
#
# Environment:
#   RUNTIME [10]        seconds per fio job
#   VOL_SIZE [1G]       volume size (K/M/G suffixes)
#   ROUNDS [1]          run the whole list of systems this many times,
#                       interleaved; the table shows per-metric medians
#   --quick (or E2E_QUICK=1, or BENCH_ARGS containing --quick, as with
#                       `BENCH_ARGS=--quick BENCH_E2E=1 make bench`): a smoke
#                       run; RUNTIME, VOL_SIZE and SETTLE default to 3, 256M, 1
#   PREFILL [random]    random: the volumes start as pseudo-random data (so
#                       the initial syncs copy real data and the writes do not
#                       allocate blocks); sparse: a hole
#   E2E_TMP [/var/tmp]  where the volumes go (tmpfs is refused)
#   E2E_SYSTEMS ["nbdkit sync memsync async qemu qemu-wt"]   subset/order
#   E2E_JOBS ["a b c d"] subset of jobs
#   E2E_WT_JOBS ["c"]   the jobs qemu-wt runs (those of E2E_JOBS in this list)
#   DUET_GROUPS [4] DUET_TASKS [4] DUET_RANGE [256M]   the engine's shape
#                       (mirror.task_groups, .tasks_per_group, .range_size;
#                       the same on both daemons)
#   DUET_INLINE_US [50] mirror.inline_us on both daemons (0: every
#                       operation is handed to a worker thread)
#   DUET_POLL_US [400]  mirror.poll_us on both daemons (0: never poll)
#   QEMU_AIO [auto]     aio= of QEMU's file nodes: io_uring, threads, or auto
#                       (io_uring when a qemu-io probe works)
#   QEMU_NODELAY [auto] 1/0/auto: LD_PRELOAD bench/shim/nodelay.c into the
#                       mirror qemu-storage-daemon (TCP_NODELAY on the sockets
#                       it accepts); auto: on for QEMU < 8.0, whose NBD server
#                       otherwise stalls ~40 ms per reply at queue depth >= 2
#   SETTLE [3]          seconds of pause (after a sync) between systems
#   QUIET_WAIT [0]      wait up to this many seconds, before starting, for a
#                       5 s window in which the host is at most 10 % busy
#                       (the machine may be shared; the header says how busy
#                       it was either way)
#   SYNC_TIMEOUT [300]  seconds allowed for the initial sync
#   KEEP [0]            1: keep the work directory (volumes, logs, fio JSON)
#
# Smoke test: bench/e2e.sh --quick
set -u

# shellcheck disable=SC2034 # lib.sh's messages use it
BL_NAME=e2e
# TOP, bl_args, say, alive, stop_pid, free_port, cpu_s, host_cpu, busy_pct,
# quiet_wait, mkvol_random, duet_confs, start_mirror, start_primary
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bl_args "$@"
[ "${E2E_QUICK:-0}" = 1 ] && QUICK=1
case $B in /*) ;; *) B=$PWD/$B ;; esac
if [ "$QUICK" = 1 ]; then
	RUNTIME=${RUNTIME:-3} VOL_SIZE=${VOL_SIZE:-256M} SETTLE=${SETTLE:-1}
fi
RUNTIME=${RUNTIME:-10}
VOL_SIZE=${VOL_SIZE:-1G}
ROUNDS=${ROUNDS:-1}
PREFILL=${PREFILL:-random}
E2E_TMP=${E2E_TMP:-/var/tmp}
E2E_SYSTEMS=${E2E_SYSTEMS:-nbdkit sync memsync async qemu qemu-wt}
E2E_JOBS=${E2E_JOBS:-a b c d}
E2E_WT_JOBS=${E2E_WT_JOBS:-c}
DUET_GROUPS=${DUET_GROUPS:-4}
DUET_TASKS=${DUET_TASKS:-4}
DUET_RANGE=${DUET_RANGE:-256M}
DUET_INLINE_US=${DUET_INLINE_US:-50}
DUET_POLL_US=${DUET_POLL_US:-400}
QEMU_AIO=${QEMU_AIO:-auto}
QEMU_NODELAY=${QEMU_NODELAY:-auto}
SETTLE=${SETTLE:-3}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-300}
QUIET_WAIT=${QUIET_WAIT:-0}
QSD=${QSD:-qemu-storage-daemon}
QMP=$TOP/bench/qmp.py

PRIMARY=$B/duet-primary
MIRROR=$B/duet-mirror

for c in fio nbdkit qemu-io python3 openssl cmp numfmt ss; do
	command -v "$c" >/dev/null 2>&1 ||
	    { echo "SKIP: e2e bench: $c is not installed"; exit 77; }
done
for c in "$PRIMARY" "$MIRROR"; do
	[ -x "$c" ] || { echo "e2e: $c is not built (make)" >&2; exit 1; }
done
VOL_BYTES=$(numfmt --from=iec "$VOL_SIZE") ||
    { echo "e2e: bad VOL_SIZE '$VOL_SIZE'" >&2; exit 1; }
case $ROUNDS in
'' | *[!0-9]* | 0) echo "e2e: ROUNDS must be a positive integer" >&2; exit 1 ;;
esac
for sys in $E2E_SYSTEMS; do
	case $sys in
	nbdkit | sync | memsync | async | qemu | qemu-wt) ;;
	*) echo "e2e: unknown system '$sys'" >&2; exit 1 ;;
	esac
done
for _j in $E2E_JOBS $E2E_WT_JOBS; do
	case $_j in
	a | b | c | d) ;;
	*) echo "e2e: unknown job '$_j'" >&2; exit 1 ;;
	esac
done
# The QEMU systems need qemu-storage-daemon; without it they are skipped
# (with a note in the output), the rest still runs.
QEMU_SKIP=""
case " $E2E_SYSTEMS " in
*" qemu "* | *" qemu-wt "*)
	if ! command -v "$QSD" >/dev/null 2>&1; then
		QEMU_SKIP="$QSD is not installed (Debian: qemu-system-common; make deps)"
	elif [ "$QEMU_NODELAY" != 0 ] && ! command -v "${CC:-cc}" >/dev/null 2>&1 &&
	    { [ "$QEMU_NODELAY" = 1 ] ||
	    [ "$("$QSD" --version | sed -n '1s/.*version \([0-9]*\)\..*/\1/p')" -lt 8 ]; }; then
		QEMU_SKIP="no C compiler to build bench/shim/nodelay.c (QEMU < 8 needs it)"
	fi
	if [ -n "$QEMU_SKIP" ]; then
		_s=""
		for sys in $E2E_SYSTEMS; do
			case $sys in qemu | qemu-wt) ;; *) _s="$_s $sys" ;; esac
		done
		E2E_SYSTEMS=${_s# }
	fi ;;
esac
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
NBDKIT_PID="" PRIMARY_PID="" MIRROR_PID="" FIO_PID="" QP_PID="" QM_PID=""

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	_rc=$?
	trap - EXIT INT TERM HUP
	for _p in $FIO_PID $PRIMARY_PID $MIRROR_PID $NBDKIT_PID $QP_PID $QM_PID; do
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

# ---- volumes

mkvol() {
	case $PREFILL in
	random)
		mkvol_random "$1" "$VOL_BYTES" || exit 1 ;;
	sparse)
		rm -f "$1"
		truncate -s "$VOL_BYTES" "$1" ||
		    { echo "e2e: cannot create $1" >&2; exit 1; } ;;
	*)
		echo "e2e: PREFILL must be random or sparse" >&2
		exit 1 ;;
	esac
}

# ---- fio

FAILED=""

# run_jobs SYSTEM URI [JOBS]: every job of JOBS (default E2E_JOBS), JSON in
# $RR/SYSTEM.JOB.json ($RR: this round's results).
run_jobs() {
	for _j in ${3:-$E2E_JOBS}; do
		case $_j in
		a) _name=a_randw4k_qd32 _args="--rw=randwrite --bs=4k --iodepth=32" ;;
		b) _name=b_seqw64k_qd8 _args="--rw=write --bs=64k --iodepth=8" ;;
		c) _name=c_randw4k_qd1_fsync
		   _args="--rw=randwrite --bs=4k --iodepth=1 --fsync=1"
		   sync	# the host's dirty pages, the mirror's included
		   timeout 60 qemu-io -f raw -c flush "$2" >>"$RR/$1.qemu-io.log" 2>&1 ||
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
		    $_args --output-format=json --output="$RR/$1.$_j.json" \
		    >"$RR/$1.$_j.log" 2>&1 &
		FIO_PID=$!
		wait "$FIO_PID"
		_rc=$?
		FIO_PID=""
		if [ $_rc -ne 0 ]; then
			say "$1: fio $_name failed (exit $_rc):"
			tail -5 "$RR/$1.$_j.log" >&2
			rm -f "$RR/$1.$_j.json"
			FAILED="$FAILED $1/$_name"
		fi
	done
}

# info SYSTEM KEY VALUE: a detail for the report.
info() { echo "$2=$3" >>"$RR/$1.info"; }

# host_info SYSTEM BEFORE: host CPU over the jobs (see host_cpu).
host_info() {
	info "$1" host "$2 $(host_cpu)"
	info "$1" hz "$(getconf CLK_TCK)"
	info "$1" ncpu "$(grep -c '^cpu[0-9]' /proc/stat)"
}

# ---- nbdkit

run_nbdkit() {
	_d=$D/nbdkit
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

# certs: one throwaway CA and a certificate each for "mirror" and "primary"
# (tests/certs.sh: EC P-256, CN and DNS SAN = the name), for duet and QEMU
# alike. QEMU's tls-creds-x509 wants its own file names in one directory:
# $W/qemu-tls holds links to the same files.
certs() {
	[ -f "$W/certs/ca.pem" ] && return 0
	sh "$TOP/tests/certs.sh" "$W/certs" mirror primary || return 1
	mkdir -p "$W/qemu-tls"
	ln -s ../certs/ca.pem "$W/qemu-tls/ca-cert.pem"
	ln -s ../certs/mirror.pem "$W/qemu-tls/server-cert.pem"
	ln -s ../certs/mirror.key "$W/qemu-tls/server-key.pem"
	ln -s ../certs/primary.pem "$W/qemu-tls/client-cert.pem"
	ln -s ../certs/primary.key "$W/qemu-tls/client-key.pem"
}

# run_duet MODE
run_duet() {
	_m=$1 _s=duet-$1 _dd=$D/$1
	mkdir -p "$_dd"
	certs || { duet_fail "$_m" "tests/certs.sh failed" certs; return; }
	duet_confs "$_dd" "$VOL_BYTES" "$_m"	# PORT, NBD_URI
	mkvol "$_dd/primary.img"	# the mirror starts with no volume

	if ! start_mirror "$_dd"; then
		duet_fail "$_m" "duet-mirror did not start" start
		stop_pid "$MIRROR_PID" 5; MIRROR_PID=""
		return
	fi
	if ! start_primary "$_dd"; then
		duet_fail "$_m" "duet-primary did not start" start
		stop_pid "$PRIMARY_PID" 5; PRIMARY_PID=""
		stop_pid "$MIRROR_PID" 10; MIRROR_PID=""
		return
	fi
	_n=0
	until grep -qs 'sync complete' "$_dd/primary.log"; do
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
	run_jobs "$_s" "$NBD_URI"
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

# ---- QEMU's active mirror

# qemu_aio: the aio= of QEMU's file nodes (QEMU_AIO; auto: io_uring when a
# qemu-io probe of it works here, else threads).
qemu_aio() {
	case $QEMU_AIO in
	auto)
		truncate -s 1M "$W/aio-probe.img"
		if timeout 20 qemu-io -f raw -i io_uring -c 'write 0 4k' -c flush \
		    "$W/aio-probe.img" >/dev/null 2>&1; then
			QEMU_AIO=io_uring
		else
			QEMU_AIO=threads
		fi
		rm -f "$W/aio-probe.img" ;;
	esac
}

# qemu_shim: builds bench/shim/nodelay.c into $W when QEMU_NODELAY asks for it
# (auto: QEMU < 8.0); sets SHIM to the library, or to "" for none.
SHIM=-
qemu_shim() {
	[ "$SHIM" = - ] || return 0
	SHIM=""
	case $QEMU_NODELAY in
	0) return 0 ;;
	auto)
		[ "$("$QSD" --version | sed -n '1s/.*version \([0-9]*\)\..*/\1/p')" \
		    -lt 8 ] || return 0 ;;
	esac
	"${CC:-cc}" -O2 -shared -fPIC -o "$W/nodelay.so" \
	    "$TOP/bench/shim/nodelay.c" -ldl || return 1
	SHIM=$W/nodelay.so
}

qemu_fail() {
	say "$1: $2"
	for _f in primary mirror; do
		[ -s "$_dd/$_f.log" ] || continue
		echo "--- qemu-storage-daemon $_f log (last 15 lines)" >&2
		tail -15 "$_dd/$_f.log" >&2
	done
	FAILED="$FAILED $1/$3"
	info "$1" verify "n/a ($2)"
}

# qsd_quit PID QMP_SOCKET: "quit" over QMP, wait up to 30 s for the exit
# (then SIGTERM/SIGKILL by pid). Returns the exit status (124: killed).
qsd_quit() {
	python3 "$QMP" "$2" quit >/dev/null 2>&1
	_n=0
	while alive "$1" && [ $_n -lt 300 ]; do
		sleep 0.1
		_n=$((_n + 1))
	done
	if alive "$1"; then
		say "qemu-storage-daemon $1 still running 30 s after quit"
		stop_pid "$1" 10
		return 124
	fi
	wait "$1"
}

# wait_for WHAT PID TEST...: until TEST succeeds (10 s), false if PID dies.
wait_for() {
	_w=$1 _wp=$2
	shift 2
	_n=0
	until "$@"; do
		if ! alive "$_wp" || [ $_n -ge 100 ]; then
			say "no $_w"
			return 1
		fi
		sleep 0.1
		_n=$((_n + 1))
	done
}
# shellcheck disable=SC2317 # called through wait_for
listening() { [ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]; }

# run_qemu qemu|qemu-wt
run_qemu() {
	_s=qemu-mirror _wt="" _jobs=$E2E_JOBS _dd=$D/$1
	if [ "$1" = qemu-wt ]; then
		_s=qemu-mirror-wt _wt=",writethrough=on" _jobs=""
		for _j in $E2E_JOBS; do
			case " $E2E_WT_JOBS " in *" $_j "*) _jobs="$_jobs $_j" ;; esac
		done
		[ -n "$_jobs" ] || { say "$_s: none of E2E_JOBS is in E2E_WT_JOBS"; return; }
	fi
	mkdir -p "$_dd"
	certs || { qemu_fail "$_s" "tests/certs.sh failed" certs; return; }
	qemu_shim || { qemu_fail "$_s" "cannot build bench/shim/nodelay.c" shim; return; }
	qemu_aio
	_shim=off
	[ -n "$SHIM" ] && _shim="on (mirror)"
	info "$_s" qemu "aio=$QEMU_AIO, TCP_NODELAY shim $_shim"
	_port=$(free_port)
	mkvol "$_dd/primary.img"
	truncate -s "$VOL_BYTES" "$_dd/mirror.img"	# empty: the job fills it

	# The mirror: an NBD export over TLS on 127.0.0.1, client certificates
	# required (verify-peer), and a QMP socket for "quit".
	# shellcheck disable=SC2086 # ${SHIM:+...} is one word or none
	env ${SHIM:+LD_PRELOAD=$SHIM} "$QSD" \
	    --object "tls-creds-x509,id=tls0,dir=$W/qemu-tls,endpoint=server,verify-peer=on" \
	    --blockdev "driver=file,node-name=mir-file,filename=$_dd/mirror.img,aio=$QEMU_AIO" \
	    --blockdev "driver=raw,node-name=mir,file=mir-file" \
	    --nbd-server "addr.type=inet,addr.host=127.0.0.1,addr.port=$_port,tls-creds=tls0" \
	    --export "type=nbd,id=exp-mir,node-name=mir,name=mirror,writable=on$_wt" \
	    --chardev "socket,id=qmp0,path=$_dd/mirror.qmp,server=on,wait=off" \
	    --monitor chardev=qmp0 </dev/null >"$_dd/mirror.log" 2>&1 &
	QM_PID=$!
	if ! wait_for "mirror NBD listener" "$QM_PID" listening "$_port" ||
	    ! wait_for "mirror QMP socket" "$QM_PID" test -S "$_dd/mirror.qmp"; then
		qemu_fail "$_s" "the mirror qemu-storage-daemon did not start" start
		stop_pid "$QM_PID" 5; QM_PID=""
		return
	fi
	# TLS is really required: a plaintext client must be refused.
	if command -v nbdinfo >/dev/null 2>&1 &&
	    timeout 20 nbdinfo --size "nbd://127.0.0.1:$_port/mirror" >/dev/null 2>&1; then
		qemu_fail "$_s" "the mirror accepted a plaintext NBD client" tls
		stop_pid "$QM_PID" 5; QM_PID=""
		return
	fi

	# The primary: the client's NBD export on a Unix socket.
	"$QSD" \
	    --object "tls-creds-x509,id=tls0,dir=$W/qemu-tls,endpoint=client" \
	    --blockdev "driver=file,node-name=prim-file,filename=$_dd/primary.img,aio=$QEMU_AIO" \
	    --blockdev "driver=raw,node-name=prim,file=prim-file" \
	    --nbd-server "addr.type=unix,addr.path=$_dd/nbd.sock" \
	    --export "type=nbd,id=exp-prim,node-name=prim,name=vol,writable=on" \
	    --chardev "socket,id=qmp0,path=$_dd/primary.qmp,server=on,wait=off" \
	    --monitor chardev=qmp0 </dev/null >"$_dd/primary.log" 2>&1 &
	QP_PID=$!
	if ! wait_for "primary QMP socket" "$QP_PID" test -S "$_dd/primary.qmp" ||
	    ! wait_for "primary NBD socket" "$QP_PID" test -S "$_dd/nbd.sock"; then
		qemu_fail "$_s" "the primary qemu-storage-daemon did not start" start
		stop_pid "$QP_PID" 5; QP_PID=""
		stop_pid "$QM_PID" 5; QM_PID=""
		return
	fi
	# The NBD client node "tgt" (TLS; the mirror's certificate names it
	# "mirror", not 127.0.0.1, hence tls-hostname), then the active mirror
	# job, and READY: the whole volume copied and the target flushed.
	_tgt=$(printf '{"driver":"nbd","node-name":"tgt","export":"mirror",%s,%s,%s}' \
	    "\"server\":{\"type\":\"inet\",\"host\":\"127.0.0.1\",\"port\":\"$_port\"}" \
	    '"tls-creds":"tls0"' '"tls-hostname":"mirror"')
	if ! _t=$(python3 "$QMP" "$_dd/primary.qmp" mirror job0 "$_tgt" \
	    "$SYNC_TIMEOUT" 2>"$_dd/qmp.err"); then
		cat "$_dd/qmp.err" >&2
		qemu_fail "$_s" "the mirror job did not become READY" sync
		stop_pid "$QP_PID" 10; QP_PID=""
		stop_pid "$QM_PID" 10; QM_PID=""
		return
	fi
	info "$_s" initial_sync "$VOL_BYTES bytes to READY (blockdev-mirror sync=full, copy-mode=write-blocking) in $_t s"
	same_vols "$_s" verify_sync

	_h0=$(host_cpu) _p0=$(cpu_s "$QP_PID") _q0=$(cpu_s "$QM_PID")
	# shellcheck disable=SC2086 # _jobs is a word list
	run_jobs "$_s" "nbd+unix:///vol?socket=$_dd/nbd.sock" "$_jobs"
	info "$_s" cpu_primary "$(awk -v a="$_p0" -v b="$(cpu_s "$QP_PID")" \
	    'BEGIN { printf "%.1f", b - a }')"
	info "$_s" cpu_mirror "$(awk -v a="$_q0" -v b="$(cpu_s "$QM_PID")" \
	    'BEGIN { printf "%.1f", b - a }')"
	host_info "$_s" "$_h0"

	_bad=""
	alive "$QP_PID" || { qemu_fail "$_s" "the primary died" crash; _bad=1; }
	alive "$QM_PID" || { qemu_fail "$_s" "the mirror died" crash; _bad=1; }
	if [ -z "$_bad" ]; then
		if _t=$(python3 "$QMP" "$_dd/primary.qmp" finish job0 120 \
		    2>"$_dd/qmp.err"); then
			info "$_s" job_finish_s "$_t"
		else
			cat "$_dd/qmp.err" >&2
			qemu_fail "$_s" "the mirror job did not complete" stop
			_bad=1
		fi
	fi
	qsd_quit "$QP_PID" "$_dd/primary.qmp"
	_prc=$?
	QP_PID=""
	qsd_quit "$QM_PID" "$_dd/mirror.qmp"
	_mrc=$?
	QM_PID=""
	if [ $_prc -ne 0 ] || [ $_mrc -ne 0 ]; then
		qemu_fail "$_s" "quit: primary exit $_prc, mirror exit $_mrc \
(124: killed after the timeout)" stop
		_bad=1
	fi
	[ -n "$_bad" ] && return
	if ! same_vols "$_s" verify; then
		KEEP_DIRS="$KEEP_DIRS $_dd"
		return
	fi
	[ "$KEEP" = 1 ] || rm -f "$_dd/primary.img" "$_dd/mirror.img"
}

# ---- main

KEEP_DIRS=""
# shellcheck disable=SC2046 # two numbers
set -- $(quiet_wait "$QUIET_WAIT")
{
	echo "== duet e2e bench: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), nproc $(nproc), $(uname -sr)"
	case $B in
	"$TOP"/*) _v="duet $(git -C "$TOP" describe --always --dirty 2>/dev/null || echo '?')" ;;
	*) _v="duet (built outside this checkout)" ;;
	esac
	echo "   $_v: binaries from $B, built $PRIMARY_BUILT"
	echo "   $(fio --version), $(nbdkit --version), $(qemu-io --version | head -1)"
	if [ -n "$QEMU_SKIP" ]; then
		echo "   QEMU active mirror: skipped: $QEMU_SKIP"
	else
		echo "   $("$QSD" --version | head -1)"
	fi
	echo "   RUNTIME ${RUNTIME} s per job, volume $VOL_SIZE ($PREFILL) in $E2E_TMP" \
	    "($(findmnt -no FSTYPE -T "$E2E_TMP" 2>/dev/null || stat -f -c %T "$E2E_TMP")," \
	    "$(df --output=source "$E2E_TMP" | tail -1)); duet engine" \
	    "${DUET_GROUPS}x${DUET_TASKS}, range $DUET_RANGE," \
	    "inline_us $DUET_INLINE_US, poll_us $DUET_POLL_US, TLS on 127.0.0.1"
	_r="1 round"
	[ "$ROUNDS" -gt 1 ] && _r="$ROUNDS rounds (interleaved; medians)"
	echo "   systems: $E2E_SYSTEMS; jobs: $E2E_JOBS (qemu-wt: $E2E_WT_JOBS); $_r"
	echo "   host before the start: $1 % busy, $2 % steal"
	echo
} >"$R/header"
cat "$R/header"

_round=1
while [ $_round -le "$ROUNDS" ]; do
	RR=$R/r$_round D=$W/r$_round
	mkdir -p "$RR" "$D"
	for sys in $E2E_SYSTEMS; do
		sync
		sleep "$SETTLE"
		if [ "$ROUNDS" -gt 1 ]; then
			say "=== $sys (round $_round of $ROUNDS)"
		else
			say "=== $sys"
		fi
		case $sys in
		nbdkit) run_nbdkit ;;
		sync | memsync | async) run_duet "$sys" ;;
		qemu | qemu-wt) run_qemu "$sys" ;;
		esac
	done
	_round=$((_round + 1))
done
case " $E2E_JOBS " in
*" c "*)
	say "=== flushfloor (job c's floor on this disk)"
	"$B/bench/flushfloor" --seconds 6 "$E2E_TMP" >"$R/flushfloor" ||
	    say "flushfloor failed; no floor in the report"
	;;
esac

# The report: the table (medians over the rounds), the targets, then one
# line of details per system and round.
_names=""
for sys in $E2E_SYSTEMS; do
	case $sys in
	nbdkit) _names="$_names nbdkit" ;;
	qemu) _names="$_names qemu-mirror" ;;
	qemu-wt) _names="$_names qemu-mirror-wt" ;;
	*) _names="$_names duet-$sys" ;;
	esac
done
# shellcheck disable=SC2086 # _names is a word list
python3 - "$R" "$ROUNDS" "$E2E_JOBS" $_names <<'EOF'
import json, math, os, re, statistics, sys

rdir, rounds, jobs, systems = (sys.argv[1], int(sys.argv[2]), sys.argv[3].split(),
                               sys.argv[4:])
names = {"a": "a_randw4k_qd32", "b": "b_seqw64k_qd8",
         "c": "c_randw4k_qd1_fsync", "d": "d_randr4k_qd32"}
METRICS = ("iops", "mbps", "p50", "p99", "f50", "f99")


def pct(lat, p):
    v = (lat or {}).get("percentile", {}).get(p)
    return v / 1000.0 if v is not None else math.nan


def load(path):
    try:
        d = json.load(open(path))
    except (OSError, ValueError):
        return None
    job = d["jobs"][0]
    if job.get("error"):
        return None
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
    return r


runs = {}   # (system, job) -> [result of each round that ran]
infos = {}  # (system, round) -> {key: value}
for n in range(1, rounds + 1):
    rd = os.path.join(rdir, "r%d" % n)
    for s in systems:
        for j in jobs:
            r = load(os.path.join(rd, "%s.%s.json" % (s, j)))
            if r:
                runs.setdefault((s, j), []).append(r)
        info = {}
        p = os.path.join(rd, s + ".info")
        if os.path.exists(p):
            for line in open(p):
                k, _, v = line.rstrip("\n").partition("=")
                info[k] = v
        infos[s, n] = info


def median(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else math.nan


res = {k: {m: median([r[m] for r in v]) for m in METRICS} for k, v in runs.items()}


def f(x, w, prec=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "%*s" % (w, "-")
    return "%*.*f" % (w, prec, x)


def qref(j):
    """The QEMU row a job's "x qemu" is taken against: the writethrough
    variant for c (its flushes reach the mirror's disk, as duet's do)."""
    if j == "c" and ("qemu-mirror-wt", j) in res:
        return "qemu-mirror-wt"
    return "qemu-mirror"


def ratio(s, j, base):
    b, x = res.get((base, j)), res.get((s, j))
    if b and x and b["iops"] > 0:
        return x["iops"] / b["iops"]
    return None


def mirror_col(s):
    if s == "nbdkit":
        return "-"
    v = []
    for n in range(1, rounds + 1):
        i = infos.get((s, n), {})
        v += [i.get("verify_sync", "n/a"), i.get("verify", "n/a")]
    if any(x.startswith("MISMATCH") for x in v):
        return "MISMATCH"
    if all(x.startswith("MATCH") for x in v):
        return "match"
    return "n/a"


TARGETS = {("duet-sync", "a"): 0.45, ("duet-sync", "b"): 0.40,
           ("duet-sync", "c"): 0.70, ("duet-async", "a"): 0.60}

print("%-20s %-14s %8s %7s %7s %7s %9s %9s %8s %7s %-12s %s" % (
    "job", "system", "IOPS", "MB/s", "p50 us", "p99 us", "flush p50",
    "flush p99", "x nbdkit", "x qemu", "target", "mirror"))
for j in jobs:
    first = True
    for s in systems:
        if s == "qemu-mirror-wt" and (s, j) not in runs and (s, "c") in runs:
            continue    # qemu-wt runs only E2E_WT_JOBS
        lab = names.get(j, j) if first else ""
        first = False
        r = res.get((s, j))
        if r is None:
            print("%-20s %-14s %8s %7s %7s %7s %9s %9s %8s %7s %-12s %s" % (
                lab, s, "FAILED", "", "", "", "", "", "", "", "", mirror_col(s)))
            continue
        xq = None if s in ("nbdkit",) else ratio(s, j, qref(j))
        tgt = ""
        if (s, j) in TARGETS:
            x, t = ratio(s, j, "nbdkit"), TARGETS[s, j]
            tgt = ">=%.2f %s" % (t, "-" if x is None else
                                 "met" if x >= t else "MISSED")
        print("%-20s %-14s %s %s %s %s %s %s %s %s %-12s %s" % (
            lab, s, f(r["iops"], 8), f(r["mbps"], 7, 1), f(r["p50"], 7),
            f(r["p99"], 7), f(r["f50"], 9), f(r["f99"], 9),
            f(ratio(s, j, "nbdkit"), 8, 2), f(xq, 7, 2), tgt, mirror_col(s)))
print("x nbdkit, x qemu = IOPS (so also MB/s) of the system / that of nbdkit, "
      "of qemu-mirror (jobs a, b, d)\nand of qemu-mirror-wt (job c, whose "
      "FLUSHes reach the mirror's disk only there) in this run;\nlatencies "
      "are fio lat (submit to complete); flush = the FLUSH after each write "
      "in job c;\nmirror = cmp of the mirror's volume with the primary's, "
      "after the initial sync and after a clean stop.")
if rounds > 1:
    print("%d rounds: every figure is the median over the rounds; the ratios "
          "are ratios of the medians." % rounds)
print()

parts = []
for (s, j), t in TARGETS.items():
    x = ratio(s, j, "nbdkit")
    got = "not run" if x is None else "%.2f %s" % (x, "met" if x >= t else "MISSED")
    parts.append("%s %s >= %.2fx: %s" % (s[5:], j, t, got))
print("targets (issue 6, x nbdkit; for reference, never fatal): " + "; ".join(parts))
print("reference medians (../shared/bench, ROUNDS=3, 2026-11-22): nbdkit 85.5k IOPS (a), "
      "1604 MB/s (b), 2090 IOPS (c);\nQEMU active mirror over TLS 7.7k IOPS (a), "
      "161 MB/s (b), 637 IOPS (c, writethrough)")
try:
    ff = open(os.path.join(rdir, "flushfloor")).read()
except OSError:
    ff = ""
def ff_rate(label):
    m = re.search(re.escape(label) + r": ([0-9.]+)", ff)
    return float(m.group(1)) if m else None
one = ff_rate("one file")
two = ff_rate("fdatasync at once")
peer = ff_rate("behind a loopback TCP peer")
n = res.get(("nbdkit", "c"))
cycle = 1e6 / n["iops"] if n and n["iops"] > 0 else None
def cap(rate):
    return cycle / (cycle + 1e6 / rate - 1e6 / one)
if one and two:
    print("job c's floor on this disk (bench/flushfloor, no network): one "
          "4 KiB write + fdatasync %.0f us, two files fdatasync'ed at once "
          "%.0f us;" % (1e6 / one, 1e6 / two))
    if cycle:
        print("a FLUSH that reaches both copies costs %.0f us more, so with "
              "nothing else added job c reaches at most %.2fx nbdkit here" % (
                  1e6 / two - 1e6 / one, cap(two)))
    if peer and cycle:
        print("with the second file behind a loopback TCP peer (plain TCP, "
              "blocking reads, no polling: not a floor) a cycle takes %.0f "
              "us: %.2fx nbdkit" % (1e6 / peer, cap(peer)))
if rounds > 1:
    print()
    print("IOPS of each round:")
    for j in jobs:
        for s in systems:
            if (s, j) in runs:
                print("  %-20s %-14s %s" % (names.get(j, j), s, " ".join(
                    "%.0f" % r["iops"] for r in runs[s, j])))
print()

for n in range(1, rounds + 1):
    for s in systems:
        info = infos.get((s, n), {})
        det = []
        if "qemu" in info:
            det.append(info["qemu"])
        if "initial_sync" in info:
            det.append("initial sync: " + info["initial_sync"].split(";")[0])
        keys = [k for k in ("cpu_server", "cpu_primary", "cpu_mirror") if k in info]
        rd = os.path.join(rdir, "r%d" % n)
        fio_cpu = 0.0
        for j in jobs:
            r = load(os.path.join(rd, "%s.%s.json" % (s, j)))
            if r:
                fio_cpu += r["fio_cpu"]
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
        if "job_finish_s" in info:
            det.append("mirror job completed in %s s" % info["job_finish_s"])
        tag = "r%d " % n if rounds > 1 else ""
        print("%s%-14s %s" % (tag, s, "; ".join(det)))
        if "verify_sync" in info:
            print("%sVERIFY %-14s after the initial sync: %s" % (tag, s, info["verify_sync"]))
        if "verify" in info:
            print("%sVERIFY %-14s after the jobs and a clean stop: %s" % (tag, s, info["verify"]))
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
