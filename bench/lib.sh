# bench/lib.sh: helpers shared by bench/soak.sh, bench/resync.sh and
# bench/e2e.sh (POSIX sh, sourced). Not used by the tests; the tests' lib.sh
# files are not used here.
#
# The caller sets BL_NAME (for messages), calls bl_args "$@", then
# bl_setup "$B". bench/e2e.sh, which also runs nbdkit and QEMU and keeps
# its own work directory, calls bl_args but not bl_setup.
#
#   bl_args ARGS...   the command line: --quick (also read from BENCH_ARGS)
#                     sets QUICK=1 (else 0), -h prints the script's header,
#                     one operand is the build directory: B (default
#                     TOP/build)
#   bl_setup B        checks the tools (exit 77 when one is missing) and the
#                     binaries; makes the work directory $W (in $BENCH_TMP,
#                     default /var/tmp; tmpfs refused), copies the binaries
#                     into $W/bin (a rebuild of B during the run does not mix
#                     builds), makes certificates in $W/certs, sets $OUT
#                     (B/bench, where the results are kept) and installs the
#                     EXIT trap
#   say MSG           a timestamped progress line on stderr
#   alive PID         true while that child of ours runs (not a zombie)
#   stop_pid PID SECS [SIG]  SIG (default TERM), wait up to SECS, then
#                     SIGKILL; returns the exit status (124: had to be killed)
#   kill_pid PID      SIGKILL and reap; returns 0
#   free_port         a free TCP port on 127.0.0.1 (tests/free-port.py)
#   duet_confs D SIZE MODE  D/primary.conf and D/mirror.conf (volume files
#                     D/primary.img, D/mirror.img; status sockets D/*.status;
#                     NBD on D/nbd.sock); sets PORT and NBD_URI
#   start_mirror D    duet-mirror -f in the background, appending to
#                     D/mirror.log; waits for it to listen ($MIRROR_PID)
#   start_primary D   duet-primary -f, D/primary.log; waits for the NBD
#                     socket ($PRIMARY_PID)
#   st SOCK EXPR...   evaluates each Python EXPR on the status JSON (as s)
#                     and prints the values on one line, space-separated;
#                     false when the daemon does not answer
#   wait_in_sync D SECS  until the primary is connected, nothing is out of
#                     sync and no resync runs; false on timeout or if a
#                     daemon died
#   rss_kb PID        VmRSS in KiB (or "-")
#   cpu_s PID         user + system CPU seconds so far
#   host_cpu          "total idle iowait steal" jiffies of all CPUs, now
#   busy_pct SECS     the host's busy and steal percentages over SECS
#   quiet_wait SECS   waits up to SECS for a quiet host (see below)
#   mkvol_random FILE BYTES  FILE of BYTES pseudo-random bytes (AES-CTR
#                     keystream: fast, reproducible, incompressible), synced
#
# Every process is started here or by the caller and known by its pid
# (PRIMARY_PID, MIRROR_PID, FIO_PID, AUX_PIDS); the EXIT trap stops exactly
# those. Nothing is ever looked up or signalled by name. KEEP=1 keeps $W.
# BL_NICE="nice -n 10" (say) runs the daemons under nice (nice execs them,
# so the pid is still the daemon's).

# shellcheck disable=SC2034 # BUILT, DUET_VERSION, NBD_URI: for the callers
set -u
TOP=${BL_TOP:-$(cd "$(dirname "$0")/.." && pwd)}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
KEEP=${KEEP:-0}
PRIMARY_PID="" MIRROR_PID="" FIO_PID="" AUX_PIDS=""
BL_NICE=${BL_NICE:-}
W=""

say() { printf '[%s] %s: %s\n' "$(date +%T)" "$BL_NAME" "$*" >&2; }

bl_args() {
	QUICK=0
	case " ${BENCH_ARGS:-} " in *" --quick "*) QUICK=1 ;; esac
	B=""
	for _a; do
		case $_a in
		--quick) QUICK=1 ;;
		-h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
		-*) echo "$BL_NAME: unknown option '$_a' (--quick, BUILD_DIR)" >&2
		    exit 1 ;;
		*) B=$_a ;;
		esac
	done
	B=${B:-$TOP/build}
}

alive() {
	[ -n "$1" ] || return 1
	kill -0 "$1" 2>/dev/null || return 1
	case $(ps -o stat= -p "$1" 2>/dev/null) in
	Z*) return 1 ;;
	esac
	return 0
}

stop_pid() {
	_sp=$1 _ss=$2 _sn=0
	kill -"${3:-TERM}" "$_sp" 2>/dev/null
	while alive "$_sp" && [ $_sn -lt $((_ss * 10)) ]; do
		sleep 0.1
		_sn=$((_sn + 1))
	done
	if alive "$_sp"; then
		say "pid $_sp still running $_ss s after SIG${3:-TERM}: SIGKILL"
		kill -KILL "$_sp" 2>/dev/null
		wait "$_sp" 2>/dev/null
		return 124
	fi
	wait "$_sp"
}

kill_pid() {
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

# shellcheck disable=SC2317 # called by the EXIT trap
bl_cleanup() {
	_rc=$?
	trap - EXIT INT TERM HUP
	for _p in $FIO_PID $AUX_PIDS $PRIMARY_PID $MIRROR_PID; do
		alive "$_p" && stop_pid "$_p" 10
	done
	if [ -n "$W" ] && [ -d "$W" ]; then
		if [ "$KEEP" = 1 ]; then
			say "kept $W"
		else
			rm -rf "$W"
		fi
	fi
	exit "$_rc"
}

bl_setup() {
	B=$1
	case $B in /*) ;; *) B=$PWD/$B ;; esac
	for _c in fio python3 openssl cmp ss numfmt timeout; do
		command -v "$_c" >/dev/null 2>&1 ||
		    { echo "SKIP: $BL_NAME bench: $_c is not installed"; exit 77; }
	done
	for _c in duet-primary duet-mirror duetctl; do
		[ -x "$B/$_c" ] ||
		    { echo "$BL_NAME: $B/$_c is not built (make $B/$_c)" >&2; exit 1; }
	done
	case $(stat -f -c %T "$BENCH_TMP" 2>/dev/null) in
	tmpfs | ramfs | "")
		echo "$BL_NAME: $BENCH_TMP is missing or in memory; set BENCH_TMP" \
		    "to a disk" >&2
		exit 1 ;;
	esac
	OUT=$B/bench
	mkdir -p "$OUT" || exit 1
	W=$(mktemp -d "$BENCH_TMP/duet-$BL_NAME.XXXXXX") || exit 1
	trap bl_cleanup EXIT
	trap 'exit 1' INT TERM HUP
	mkdir -p "$W/bin"
	cp "$B/duet-primary" "$B/duet-mirror" "$B/duetctl" "$W/bin/" || exit 1
	BUILT=$(date -u -r "$B/duet-primary" '+%Y-%m-%d %H:%M:%S UTC')
	PRIMARY=$W/bin/duet-primary
	MIRROR=$W/bin/duet-mirror
	DUETCTL=$W/bin/duetctl
	sh "$TOP/tests/certs.sh" "$W/certs" mirror primary ||
	    { echo "$BL_NAME: tests/certs.sh failed" >&2; exit 1; }
	case $B in
	"$TOP"/*) DUET_VERSION="duet $(git -C "$TOP" describe --always --dirty \
	    2>/dev/null || echo '?')" ;;
	*) DUET_VERSION="duet (built outside this checkout)" ;;
	esac
}

free_port() {
	python3 "$TOP/tests/free-port.py" "$W/free-ports"
}

# duet_conf FILE SIDE D SIZE MODE: one side's config.
_duet_conf() {
	_peer=mirror
	[ "$2" = mirror ] && _peer=primary
	{
		cat <<EOF
# bench/$BL_NAME.sh: duet-$2
volume = {
  name = "vol";
  path = "$3/$2.img";
  size = "$4";
  metadata = "$3/$2.meta";
  extent_size = "${EXTENT_SIZE:-64K}";
};
mirror = {
  listen = "127.0.0.1:$PORT";
  task_groups = ${DUET_GROUPS:-4};
  tasks_per_group = ${DUET_TASKS:-4};
  range_size = "${DUET_RANGE:-256M}";
  inline_us = ${DUET_INLINE_US:-50};
  poll_us = ${DUET_POLL_US:-400};
};
tls = {
  ca = "$W/certs/ca.pem";
  cert = "$W/certs/$2.pem";
  key = "$W/certs/$2.key";
  peer_name = "$_peer";
};
status = {
  socket = "$3/$2.status";
};
EOF
		[ "$2" = primary ] && cat <<EOF
primary = {
  nbd_socket = "$3/nbd.sock";
  mirror = "127.0.0.1:$PORT";
  mode = "$5";
};
EOF
	} >"$1"
}

duet_confs() {
	mkdir -p "$1"
	PORT=$(free_port)
	_duet_conf "$1/mirror.conf" mirror "$1" "$2" "$3"
	_duet_conf "$1/primary.conf" primary "$1" "$2" "$3"
	NBD_URI="nbd+unix:///vol?socket=$1/nbd.sock"
}

start_mirror() {
	echo "=== start $(date '+%T.%N')" >>"$1/mirror.log"
	# shellcheck disable=SC2086 # BL_NICE: "nice -n N" or nothing
	$BL_NICE "$MIRROR" -c "$1/mirror.conf" -f </dev/null >>"$1/mirror.log" 2>&1 &
	MIRROR_PID=$!
	_n=0
	until [ -n "$(ss -Htln "sport = :$PORT" 2>/dev/null)" ]; do
		if ! alive "$MIRROR_PID" || [ $_n -ge 100 ]; then
			say "duet-mirror did not start listening:"
			tail -5 "$1/mirror.log" >&2
			return 1
		fi
		sleep 0.1
		_n=$((_n + 1))
	done
}

start_primary() {
	echo "=== start $(date '+%T.%N')" >>"$1/primary.log"
	# shellcheck disable=SC2086
	$BL_NICE "$PRIMARY" -c "$1/primary.conf" -f </dev/null >>"$1/primary.log" 2>&1 &
	PRIMARY_PID=$!
	_n=0
	until [ -S "$1/nbd.sock" ]; do
		if ! alive "$PRIMARY_PID" || [ $_n -ge 100 ]; then
			say "duet-primary did not start serving:"
			tail -5 "$1/primary.log" >&2
			return 1
		fi
		sleep 0.1
		_n=$((_n + 1))
	done
}

st() {
	_sock=$1
	shift
	"$DUETCTL" -s "$_sock" status --json 2>/dev/null | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
print(" ".join(str(eval(" ".join(e.split()))) for e in sys.argv[1:]))' "$@"
}

wait_in_sync() {
	_n=0
	while :; do
		alive "$PRIMARY_PID" || return 1
		alive "$MIRROR_PID" || return 1
		[ "$(st "$1/primary.status" 's["connection"]["state"] == "connected"
		    and s["out_of_sync_extents"] == 0
		    and not s["resync"]["running"]')" = True ] && return 0
		[ $_n -ge $(($2 * 5)) ] && return 1
		sleep 0.2
		_n=$((_n + 1))
	done
}

rss_kb() {
	awk '/^VmRSS:/ { print $2; f = 1 } END { if (!f) print "-" }' \
	    "/proc/$1/status" 2>/dev/null || echo -
}

cpu_s() {
	awk -v hz="$(getconf CLK_TCK)" \
	    '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' \
	    "/proc/$1/stat" 2>/dev/null || echo nan
}

host_cpu() {
	awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i
	    print t, $5, $6, $9 }' /proc/stat
}

busy_pct() {
	_a=$(host_cpu)
	sleep "$1"
	echo "$_a $(host_cpu)" | awk '{ t = $5 - $1; if (t < 1) t = 1
	    printf "%.0f %.0f\n", 100 * (t - ($6 - $2) - ($7 - $3)) / t,
	    100 * ($8 - $4) / t }'
}

# quiet_wait SECS: waits, up to SECS, for a 5 s window in which the host is
# at most 10 % busy (the machine may be shared); prints "BUSY STEAL" of the
# last window (3 s when SECS is 0).
quiet_wait() {
	if [ "$1" -le 0 ]; then
		busy_pct 3
		return
	fi
	_t=0
	while :; do
		# shellcheck disable=SC2046 # two numbers
		set -- "$1" $(busy_pct 5)
		if [ "$2" -le 10 ] || [ $_t -ge "$1" ]; then
			echo "$2 $3"
			return
		fi
		say "host $2 % busy; waiting for a quiet 5 s (QUIET_WAIT=$1)"
		_t=$((_t + 5))
	done
}

mkvol_random() {
	rm -f "$1"
	openssl enc -aes-128-ctr -nosalt -K 6475657465326562656e636800000000 \
	    -iv 00000000000000000000000000000000 </dev/zero 2>/dev/null |
	    head -c "$2" >"$1"
	[ "$(stat -c %s "$1")" = "$2" ] ||
	    { echo "$BL_NAME: cannot create $1" >&2; return 1; }
	sync "$1"
}
