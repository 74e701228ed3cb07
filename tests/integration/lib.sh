# lib.sh: shared helpers for tests/integration/NN-*.sh (POSIX sh; sourced).
#
# A test gets a private directory $T, throwaway certificates, a free port,
# and a mirror it starts and stops by pid. On exit, whatever way, cleanup
# stops exactly the processes this test started (their pids are in
# $MIRROR_PID and $BG_PIDS; nothing is ever looked up by name) and removes
# $T (kept when DUET_KEEP=1, for a post-mortem).
#
# Exit codes: 0 pass, 1 fail (fail), 77 skip (need).
#
#   need CMD            skip the test unless CMD is installed
#   fail MSG...         print MSG and the mirror log tail, exit 1
#   mk_certs            $T/certs: ca.pem, mirror.{pem,key}, primary.{pem,key}
#   free_port           print a free TCP port on 127.0.0.1, below the
#                       ephemeral range and not given before in this test
#                       (tests/free-port.py)
#   write_conf FILE [SIZE]   a mirror config for volume vol0 on $PORT
#   host_conf FILE ROLE HOST PORT STATUS [NBD MODE [SIZE]]  either role's
#                       config for host a ($T/primary.img) or b
#                       ($T/mirror.img); write_conf and write_primary_conf
#                       are b as mirror and a as primary
#   start_mirror [CONF] start duet-mirror -f in the background, wait for
#                       it to listen ($MIRROR_PID, log in $MIRROR_LOG)
#   stop_mirror         SIGTERM it, wait (bounded); returns its exit code
#   crash_mirror        SIGKILL it
#   peer ARGS...        run duet-testpeer against the mirror (cert primary)
#   bg CMD...           run CMD (a program, or "peer ARGS...") in the
#                       background; its pid in $LAST_PID
#   bg_wait PID         wait for a pid started by bg; returns its exit code
#   log_for ADDR        the mirror log lines naming a peer address
#   log_wait ADDR RE    wait (3 s) for such a line matching RE; print it
#   wait_for FILE RE    wait (10 s) for a line matching RE in FILE
#   local_addr FILE     the local address a duet-testpeer printed
#   run_exit NAME CMD...  run CMD (10 s at most), output in $T/NAME.out,
#                       exit status in $rc
#   expect_exit NAME CODE TEXT...  the last run_exit NAME exited CODE and
#                       printed every TEXT
#   check_usage PROG CODE  -h and --help print the usage on stdout and
#                       exit 0; --bogus prints it on stderr, naming the
#                       option, and exits CODE
#
# With duet-primary (set NEED_PRIMARY=1 before sourcing):
#   write_primary_conf FILE MODE [SIZE]  the primary's config for vol0:
#                       $T/primary.img, NBD socket $NBD_SOCK ($NBD_URI)
#   start_primary [CONF] start duet-primary -f -v ($PRIMARY_PID, log in
#                       $PRIMARY_LOG), wait for its NBD socket
#   stop_primary        SIGTERM it, wait (bounded); returns its exit code
#   crash_primary       SIGKILL it
#   wait_synced [N]     wait (60 s) for the N-th "sync complete"
#   same_images [WHAT]  cmp the primary's and the mirror's volume files

set -u

DUET_BUILD=${DUET_BUILD:-$PWD/build}
TOP=${DUET_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
MIRROR=$DUET_BUILD/duet-mirror
TESTPEER=$DUET_BUILD/duet-testpeer
MIRROR_PID=""
PRIMARY_PID=""
BG_PIDS=""
PORT=""
SIZE=64M
TNAME=$(basename "$0" .sh)

T=$(mktemp -d /var/tmp/duet-it.XXXXXX) || { echo "FAIL: mktemp"; exit 1; }
MIRROR_LOG=$T/mirror.log
PRIMARY_LOG=$T/primary.log
NBD_SOCK=$T/nbd.sock
PRIMARY_STATUS=$T/primary.status
MIRROR_STATUS=$T/status.sock
NBD_URI="nbd+unix:///vol0?socket=$NBD_SOCK"
PRIMARY=$DUET_BUILD/duet-primary
: >"$MIRROR_LOG"
: >"$PRIMARY_LOG"

# True while our child pid runs (an exited, unreaped child is a zombie:
# kill -0 still succeeds on it).
_alive() {
	kill -0 "$1" 2>/dev/null || return 1
	case $(ps -o stat= -p "$1" 2>/dev/null) in
	Z*) return 1 ;;
	esac
	return 0
}

# Sends sig to pid and waits up to secs for it to go; then SIGKILL.
_stop_pid() {
	_p=$1 _sig=$2 _secs=$3
	kill -"$_sig" "$_p" 2>/dev/null || return 0
	_n=0
	while _alive "$_p" && [ $_n -lt $((_secs * 10)) ]; do
		sleep 0.1
		_n=$((_n + 1))
	done
	if _alive "$_p"; then
		echo "$TNAME: pid $_p did not exit on SIG$_sig, killing it" >&2
		kill -KILL "$_p" 2>/dev/null
	fi
	wait "$_p" 2>/dev/null
	return 0
}

cleanup() {
	_rc=$?
	trap - EXIT INT TERM HUP PIPE
	for _p in $BG_PIDS; do
		_stop_pid "$_p" TERM 5
	done
	[ -n "$PRIMARY_PID" ] && _stop_pid "$PRIMARY_PID" TERM 10
	[ -n "$MIRROR_PID" ] && _stop_pid "$MIRROR_PID" TERM 10
	if [ "${DUET_KEEP:-0}" = 1 ]; then
		echo "$TNAME: kept $T" >&2
	else
		rm -rf "$T"
	fi
	exit $_rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

need() {
	command -v "$1" >/dev/null 2>&1 || { echo "SKIP: $1 not installed"; exit 77; }
}

fail() {
	echo "FAIL: $TNAME: $*"
	if [ -s "$PRIMARY_LOG" ]; then
		echo "--- primary log (last 30 lines) ---"
		tail -30 "$PRIMARY_LOG"
	fi
	if [ -s "$MIRROR_LOG" ]; then
		echo "--- mirror log (last 30 lines) ---"
		tail -30 "$MIRROR_LOG"
	fi
	exit 1
}

# Prints a file indented, for a failure message.
show() {
	[ -f "$1" ] && sed 's/^/    /' "$1" | tail -"${2:-20}"
}

run_exit() {
	_name=$1
	shift
	timeout 10 "$@" >"$T/$_name.out" 2>&1
	rc=$?
}

expect_exit() {
	_name=$1 _code=$2
	shift 2
	[ $rc -eq "$_code" ] ||
	    fail "$_name: exited $rc, expected $_code: $(show "$T/$_name.out")"
	for _want in "$@"; do
		grep -qF -- "$_want" "$T/$_name.out" ||
		    fail "$_name: output does not contain \"$_want\":" \
		    "$(show "$T/$_name.out")"
	done
	echo "ok   $_name: $(head -1 "$T/$_name.out")"
}

check_usage() {
	_n=$(basename "$1")
	for _o in -h --help; do
		"$1" $_o >"$T/usage.out" 2>"$T/usage.err"
		_rc=$?
		[ $_rc -eq 0 ] && [ ! -s "$T/usage.err" ] &&
		    grep -q "^usage: $_n " "$T/usage.out" ||
		    fail "$_n $_o: exit $_rc, stdout: $(show "$T/usage.out"), stderr: $(show "$T/usage.err")"
	done
	"$1" --bogus >"$T/usage.out" 2>"$T/usage.err"
	_rc=$?
	[ $_rc -eq "$2" ] && [ ! -s "$T/usage.out" ] &&
	    grep -q "unrecognized option '--bogus'" "$T/usage.err" &&
	    grep -q "^usage: $_n " "$T/usage.err" ||
	    fail "$_n --bogus: exit $_rc (want $2), stdout: $(show "$T/usage.out"), stderr: $(show "$T/usage.err")"
	echo "ok   $_n: -h and --help exit 0; --bogus exits $2"
}

for _b in "$MIRROR" "$TESTPEER" ${NEED_PRIMARY:+"$PRIMARY"}; do
	[ -x "$_b" ] || fail "$_b is not built (make)"
done
need openssl
need cmp

mk_certs() {
	sh "$TOP/tests/certs.sh" "$T/certs" mirror primary ||
	    fail "tests/certs.sh failed"
}

free_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 "$TOP/tests/free-port.py" "$T/free-ports" && return 0
	fi
	need ss
	while :; do
		_p=$((10000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000))
		if [ -z "$(ss -Htln "sport = :$_p")" ]; then
			echo "$_p"
			return 0
		fi
	done
}

# write_conf FILE [SIZE]: small ranges (1M) so that ops crossing 1 MiB
# boundaries are split over task groups.
# host_conf FILE ROLE HOST PORT STATUS [NBD MODE [SIZE]]: a config for vol0
# as host HOST keeps it (a: $T/primary.img and .meta, certificate
# "primary"; b: $T/mirror.img and .meta, certificate "mirror"), for
# duet-ROLE with status socket STATUS. A mirror listens on 127.0.0.1:PORT;
# a primary serves NBD on NBD and replicates to 127.0.0.1:PORT in MODE.
host_conf() {
	case $3 in
	a) _img=primary _peer=mirror ;;
	*) _img=mirror _peer=primary ;;
	esac
	{
		echo "# $TNAME: $2 of vol0 on host $3, peer port $4"
		cat <<EOF
volume = {
  name = "vol0";
  path = "$T/$_img.img";
  size = "${8:-$SIZE}";
  metadata = "$T/$_img.meta";
  extent_size = "64K";
};
EOF
		if [ "$2" = primary ]; then
			cat <<EOF
primary = {
  nbd_socket = "$6";
  mirror = "127.0.0.1:$4";
  mode = "$7";
};
mirror = {
EOF
		else
			cat <<EOF
mirror = {
  listen = "127.0.0.1:$4";
EOF
		fi
		cat <<EOF
  task_groups = 4;
  tasks_per_group = 2;
  range_size = "1M";
};
tls = {
  ca = "$T/certs/ca.pem";
  cert = "$T/certs/$_img.pem";
  key = "$T/certs/$_img.key";
  peer_name = "$_peer";
};
status = {
  socket = "$5";
};
EOF
	} >"$1"
}

write_conf() {
	[ -n "$PORT" ] || PORT=$(free_port)
	host_conf "$1" mirror b "$PORT" "$MIRROR_STATUS" "" "" "${2:-$SIZE}"
}

# True when something listens on 127.0.0.1:$1 (no connection is made, so
# the mirror logs nothing for the probe).
_listening() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
	else
		python3 -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1" \
		    2>/dev/null
	fi
}

start_mirror() {
	_conf=${1:-$T/mirror.conf}
	[ -z "$MIRROR_PID" ] || fail "start_mirror: already running"
	echo "=== start $(date +%T.%N)" >>"$MIRROR_LOG"
	"$MIRROR" -c "$_conf" -f 2>>"$MIRROR_LOG" >>"$MIRROR_LOG" &
	MIRROR_PID=$!
	_n=0
	until _listening "$PORT"; do
		if ! _alive "$MIRROR_PID"; then
			wait "$MIRROR_PID"
			_rc=$?
			MIRROR_PID=""
			fail "duet-mirror exited with $_rc before listening"
		fi
		_n=$((_n + 1))
		[ $_n -le 100 ] || fail "duet-mirror not listening on port $PORT after 10 s"
		sleep 0.1
	done
}

stop_mirror() {
	[ -n "$MIRROR_PID" ] || return 0
	kill -TERM "$MIRROR_PID" 2>/dev/null
	_n=0
	while _alive "$MIRROR_PID"; do
		_n=$((_n + 1))
		if [ $_n -gt 100 ]; then
			kill -KILL "$MIRROR_PID" 2>/dev/null
			wait "$MIRROR_PID" 2>/dev/null
			MIRROR_PID=""
			echo "duet-mirror did not exit within 10 s of SIGTERM" >&2
			return 124
		fi
		sleep 0.1
	done
	wait "$MIRROR_PID"
	_rc=$?
	MIRROR_PID=""
	return $_rc
}

# crash_mirror: SIGKILL, as a crash would stop it.
crash_mirror() {
	[ -n "$MIRROR_PID" ] || return 0
	kill -KILL "$MIRROR_PID" 2>/dev/null
	wait "$MIRROR_PID" 2>/dev/null
	MIRROR_PID=""
	echo "=== killed $(date +%T.%N)" >>"$MIRROR_LOG"
}

peer() {
	"$TESTPEER" --connect "127.0.0.1:$PORT" --ca "$T/certs/ca.pem" \
	    --cert "$T/certs/primary.pem" --key "$T/certs/primary.key" \
	    --peer-name mirror --size "$SIZE" "$@"
}

# A function run with & is a subshell whose pid is not the program's, and
# a signal to it would leave the program running: so "bg peer ..." spells
# the command out, and the background child execs the program itself.
bg() {
	if [ "$1" = peer ]; then
		shift
		set -- "$TESTPEER" --connect "127.0.0.1:$PORT" \
		    --ca "$T/certs/ca.pem" --cert "$T/certs/primary.pem" \
		    --key "$T/certs/primary.key" --peer-name mirror \
		    --size "$SIZE" "$@"
	fi
	"$@" &
	LAST_PID=$!
	BG_PIDS="$BG_PIDS $LAST_PID"
}

bg_wait() {
	wait "$1"
	_rc=$?
	_left=""
	for _p in $BG_PIDS; do
		[ "$_p" = "$1" ] || _left="$_left $_p"
	done
	BG_PIDS=$_left
	return $_rc
}

# log_for ADDR: the mirror log lines about peer ADDR ("127.0.0.1:4711"),
# matched on ":PORT" not followed by a digit.
log_for() {
	_port=${1##*:}
	grep -E ":$_port([^0-9]|\$)" "$MIRROR_LOG"
}

# log_wait ADDR REGEX: waits up to 3 s for a mirror log line about ADDR
# matching REGEX (case-insensitive); prints it.
log_wait() {
	_n=0
	while [ $_n -lt 30 ]; do
		if log_for "$1" | grep -Ei "$2"; then
			return 0
		fi
		sleep 0.1
		_n=$((_n + 1))
	done
	return 1
}

# local_addr FILE: the "local ADDR" line duet-testpeer printed.
local_addr() {
	sed -n 's/^local //p' "$1" | head -1
}

# hup PID LOG: SIGHUP, then wait for the reload's summary line in LOG.
hup() {
	_before=$(grep -c 'reload: .* read,\|keeping the running configuration' "$2")
	kill -HUP "$1"
	_n=0
	until [ "$(grep -c 'reload: .* read,\|keeping the running configuration' "$2")" -gt "$_before" ]; do
		_n=$((_n + 1))
		[ $_n -le 50 ] || fail "no reload logged 5 s after SIGHUP"
		sleep 0.1
	done
}

# wait_for FILE REGEX [PID]: waits up to 10 s for a line matching REGEX in
# FILE (while PID, if given, lives). Returns 1 on timeout or PID's end.
wait_for() {
	_n=0
	until grep -Eq "$2" "$1" 2>/dev/null; do
		if [ -n "${3:-}" ] && ! _alive "$3"; then
			grep -Eq "$2" "$1" 2>/dev/null
			return
		fi
		_n=$((_n + 1))
		[ $_n -le 100 ] || return 1
		sleep 0.1
	done
}

# ---- duet-primary --------------------------------------------------------

write_primary_conf() {
	[ -n "$PORT" ] || PORT=$(free_port)
	host_conf "$1" primary a "$PORT" "$PRIMARY_STATUS" "$NBD_SOCK" "$2" \
	    "${3:-$SIZE}"
}

start_primary() {
	_conf=${1:-$T/primary.conf}
	[ -z "$PRIMARY_PID" ] || fail "start_primary: already running"
	echo "=== start $(date +%T.%N)" >>"$PRIMARY_LOG"
	"$PRIMARY" -c "$_conf" -f -v 2>>"$PRIMARY_LOG" >>"$PRIMARY_LOG" &
	PRIMARY_PID=$!
	_n=0
	until [ -S "$NBD_SOCK" ]; do
		if ! _alive "$PRIMARY_PID"; then
			wait "$PRIMARY_PID"
			_rc=$?
			PRIMARY_PID=""
			fail "duet-primary exited with $_rc before serving"
		fi
		_n=$((_n + 1))
		[ $_n -le 100 ] || fail "duet-primary: no NBD socket after 10 s"
		sleep 0.1
	done
}

stop_primary() {
	[ -n "$PRIMARY_PID" ] || return 0
	kill -TERM "$PRIMARY_PID" 2>/dev/null
	_n=0
	while _alive "$PRIMARY_PID"; do
		_n=$((_n + 1))
		if [ $_n -gt 400 ]; then
			kill -KILL "$PRIMARY_PID" 2>/dev/null
			wait "$PRIMARY_PID" 2>/dev/null
			PRIMARY_PID=""
			echo "duet-primary did not exit within 40 s of SIGTERM" >&2
			return 124
		fi
		sleep 0.1
	done
	wait "$PRIMARY_PID"
	_rc=$?
	PRIMARY_PID=""
	return $_rc
}

crash_primary() {
	[ -n "$PRIMARY_PID" ] || return 0
	kill -KILL "$PRIMARY_PID" 2>/dev/null
	wait "$PRIMARY_PID" 2>/dev/null
	PRIMARY_PID=""
	# Its socket stays behind: start_primary must not take it for the
	# next daemon's.
	rm -f "$NBD_SOCK"
	echo "=== killed $(date +%T.%N)" >>"$PRIMARY_LOG"
}

# wait_synced [N]: the N-th "sync complete" of this primary's log.
wait_synced() {
	_want=${1:-1}
	_n=0
	while [ "$(grep -c 'sync complete' "$PRIMARY_LOG")" -lt "$_want" ]; do
		_alive "$PRIMARY_PID" || fail "duet-primary died waiting for sync"
		_n=$((_n + 1))
		[ $_n -le 600 ] || fail "sync $_want not complete after 60 s"
		sleep 0.1
	done
}

# same_images [WHAT]: the mirror's volume equals the primary's.
same_images() {
	cmp "$T/primary.img" "$T/mirror.img" ||
	    fail "mirror differs from primary${1:+ ($1)}"
}
