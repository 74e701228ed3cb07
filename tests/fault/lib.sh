# lib.sh: helpers for tests/fault/NN-*.sh (POSIX sh; sourced), on top of
# tests/integration/lib.sh (its $T, cleanup by pid, fail, need, bg,
# start_primary / start_mirror, same_images ... all apply).
#
# The primary reaches the mirror through duet-faultproxy, so a test can
# cut, slow or reset the link: $PORT is the mirror's listening port,
# $PROXY_PORT the proxy's, and the primary's config points at the proxy.
#
#   fault_setup MODE [SIZE]  certs, both configs (mode MODE, volume SIZE,
#                       default 1G), the proxy started
#   proxy CMD...        a proxy command: pass, delay MS, rate BPS,
#                       blackhole, refuse, reset, status
#   pstat EXPR          evaluate EXPR (Python, on the primary's status JSON
#                       as s) and print it, e.g. pstat 's["disk"]'
#   mstat EXPR          the same on the mirror's status
#   wait_status WHO EXPR [SECS]  wait (default 60 s) until EXPR is true
#   wait_in_sync [SECS] wait until the primary reports nothing out of sync
#                       and no resync running, with the mirror connected
#   stamp_writes N OFF  N 4 KiB writes through qemu-io at OFF, OFF+4K ...,
#                       each filled with its index (pattern = i % 251 + 1);
#                       one "wrote" line per acknowledged write in
#                       $T/stamps.out
#   check_stamps FILE OFF  every stamp acknowledged (written at OFF) is in
#                       FILE (an image)
#   wait_stamps N       wait (15 s) until N stamps are acknowledged
#   qio CMD...          qemu-io commands, then a flush, against $NBD_URI;
#                       fails the test on an error
#   fio_load NAME OFF SIZE RUNTIME [FIO_ARG...]  fio: 4 KiB random writes,
#                       16 deep, over [OFF, OFF+SIZE) for RUNTIME s, in the
#                       background ($FIO_PID; output in $T/fio-NAME.out and
#                       .err); FIO_ARGs come last, so they override
#   fio_ok NAME         wait for that fio: it exited 0 and saw no error
#   check_resync MOVED BOUND WHAT  the resync after WHAT moved some extents,
#                       at most BOUND, and neither log shows a full resync
#                       after the first
#   al_extents OFF LEN  how many extents the 4 MiB activity log regions
#                       that [OFF, OFF+LEN) touches hold: what a crash
#                       may resync of a region written
#   need_fuse PLUGIN    skip (77) unless root, /dev/fuse, nbdfuse and
#                       nbdkit's PLUGIN are here
#   fuse_disk WHO NBDKIT_ARG...  WHO's (primary or mirror) volume becomes
#                       $T/mp/nbd, which nbdfuse serves from
#                       "nbdkit -s NBDKIT_ARG..."; unmounted, and nbdfuse
#                       stopped by pid, when the test ends
NEED_PRIMARY=1
. "$(dirname "$0")/../integration/lib.sh"
need python3
need socat

FAULTPROXY=$DUET_BUILD/tests/duet-faultproxy
[ -x "$FAULTPROXY" ] || fail "$FAULTPROXY is not built (make)"
PROXY_CTL=$T/proxy.ctl
MIB=1048576
REGION=$((4 * MIB))		# META_AL_EXTENT
EXT=$((64 * 1024))		# volume.extent_size in write_conf
PROXY_LOG=$T/proxy.log

fault_setup() {
	_mode=$1
	SIZE=${2:-1G}
	mk_certs
	# The proxy's port 0 comes from the ephemeral range, which free_port
	# avoids; where that range leaves free_port no room, both are picked
	# from it, and a collision is picked again.
	while :; do
		PORT=$(free_port)
		"$FAULTPROXY" -l 127.0.0.1:0 -t "127.0.0.1:$PORT" \
		    -c "$PROXY_CTL" >"$T/proxy.out" 2>"$PROXY_LOG" &
		_pp=$!
		BG_PIDS="$BG_PIDS $_pp"
		wait_for "$T/proxy.out" '^listening ' $_pp ||
		    fail "the proxy did not start"
		PROXY_PORT=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' \
		    "$T/proxy.out")
		[ "$PROXY_PORT" != "$PORT" ] && break
		kill "$_pp"
		wait "$_pp" 2>/dev/null
		BG_PIDS=${BG_PIDS% "$_pp"}
		rm -f "$PROXY_CTL"
	done
	write_conf "$T/mirror.conf" "$SIZE"
	_p=$PORT
	PORT=$PROXY_PORT
	write_primary_conf "$T/primary.conf" "$_mode" "$SIZE"
	PORT=$_p
}

fio_load() {
	_fn=$1 _fo=$2 _fs=$3 _fr=$4
	shift 4
	bg timeout -k 5 $((_fr + 60)) fio --name="$_fn" --ioengine=nbd \
	    --uri="$NBD_URI" --rw=randwrite --bs=4k --iodepth=16 \
	    --offset="$_fo" --size="$_fs" --time_based --runtime="$_fr" \
	    --output="$T/fio-$_fn.out" "$@" 2>"$T/fio-$_fn.err"
	FIO_PID=$LAST_PID
}

fio_ok() {
	bg_wait $FIO_PID
	_rc=$?
	[ $_rc = 0 ] ||
	    { show "$T/fio-$1.err"; fail "$1: fio failed (exit $_rc)"; }
	grep -q 'err= 0' "$T/fio-$1.out" ||
	    { show "$T/fio-$1.out"; fail "$1: fio saw errors"; }
}

qio() {
	_a=""
	for _c; do _a="$_a -c '$_c'"; done
	eval "qemu-io -f raw $_a -c flush '$NBD_URI'" >"$T/qemu-io.out" 2>&1 ||
	    fail "qemu-io $*: $(cat "$T/qemu-io.out")"
	grep -qi 'error\|fail' "$T/qemu-io.out" &&
	    fail "qemu-io $*: $(cat "$T/qemu-io.out")"
	return 0
}

proxy() {
	_r=$(printf '%s\n' "$*" | socat -t 2 - "UNIX-CONNECT:$PROXY_CTL") ||
	    fail "proxy $*: no answer"
	case $_r in
	ok*|mode=*) ;;
	*) fail "proxy $*: $_r" ;;
	esac
}

_stat() {
	"$DUET_BUILD/duetctl" -s "$1" status --json 2>/dev/null |
	    python3 -c 'import json, sys
s = json.load(sys.stdin)
print(eval(sys.argv[1]))' "$2"
}
pstat() { _stat "$PRIMARY_STATUS" "$1"; }
mstat() { _stat "$MIRROR_STATUS" "$1"; }

wait_status() {
	_who=$1 _expr=$2 _secs=${3:-60}
	_n=0
	until [ "$(_stat "$_who" "bool($_expr)" 2>/dev/null)" = True ]; do
		_n=$((_n + 1))
		[ $_n -le $((_secs * 5)) ] ||
		    fail "after $_secs s, still not: $_expr"
		sleep 0.2
	done
}

wait_in_sync() {
	wait_status "$PRIMARY_STATUS" 's["connection"]["state"] == "connected"
	    and s["out_of_sync_extents"] == 0 and not s["resync"]["running"]' \
	    "${1:-60}"
}

stamp_writes() {
	_cmds=""
	_i=0
	while [ $_i -lt "$1" ]; do
		_cmds="$_cmds -c 'write -P $((_i % 251 + 1)) $(($2 + _i * 4096)) 4k'"
		_i=$((_i + 1))
	done
	eval "qemu-io -f raw $_cmds '$NBD_URI'" >"$T/stamps.out" 2>&1
}

check_stamps() {
	python3 - "$1" "$T/stamps.out" "$2" <<'PY' || fail "acknowledged writes missing in $1"
import re, sys
img = open(sys.argv[1], "rb")
base = int(sys.argv[3])
bad = n = 0
for line in open(sys.argv[2]):
    m = re.match(r"wrote 4096/4096 bytes at offset (\d+)", line)
    if not m:
        continue
    off = int(m.group(1))
    want = (off - base) // 4096 % 251 + 1
    n += 1
    img.seek(off)
    if img.read(4096) != bytes([want]) * 4096:
        bad += 1
        if bad <= 5:
            print(f"offset {off}: not filled with {want}", file=sys.stderr)
print(f"{n} acknowledged writes checked, {bad} missing")
sys.exit(1 if bad or n == 0 else 0)
PY
}

# qemu-io buffers its output, so stamps show up in bursts.
wait_stamps() {
	_n=0
	while _c=$(grep -c '^wrote' "$T/stamps.out" 2>/dev/null)
	    [ "${_c:-0}" -lt "$1" ]; do
		_n=$((_n + 1))
		[ $_n -le 150 ] || fail "fewer than $1 stamps acknowledged after 15 s"
		sleep 0.1
	done
}

al_extents() {
	echo $(( (($1 + $2 - 1) / REGION - $1 / REGION + 1) * (REGION / EXT) ))
}

check_resync() {
	[ "$1" -gt 0 ] || fail "nothing was resynced after $3"
	[ "$1" -le "$2" ] ||
	    fail "resync moved $1 extents, more than the $2 written to"
	[ "$(grep -c 'full resync' "$PRIMARY_LOG")" = 1 ] ||
	    fail "the primary did a full resync after $3"
	[ "$(grep -c 'full resync' "$MIRROR_LOG")" = 1 ] ||
	    fail "the mirror saw a full resync after $3"
}

need_fuse() {
	need nbdfuse
	need nbdkit
	if [ "$(id -u)" != 0 ] || [ ! -c /dev/fuse ]; then
		echo "SKIP: needs root and /dev/fuse for nbdfuse"
		exit 77
	fi
	nbdkit --dump-plugin "$1" >/dev/null 2>&1 ||
	    { echo "SKIP: no nbdkit $1 plugin"; exit 77; }
}

_fuse_cleanup() {
	_x=$?
	umount -l "$T/mp" 2>/dev/null
	_stop_pid "$FUSE_PID" TERM 5
	(exit $_x)
	cleanup
}

fuse_disk() {
	# WHO (its volume) or WHO.meta (its metadata file)
	case $1 in
	*.meta) _who=${1%.meta} _key=metadata _file=$1 ;;
	*) _who=$1 _key=path _file=$1.img ;;
	esac
	shift
	mkdir "$T/mp"
	nbdfuse "$T/mp" --command nbdkit -s "$@" >"$T/fuse.log" 2>&1 &
	FUSE_PID=$!
	trap _fuse_cleanup EXIT
	_n=0
	until [ -f "$T/mp/nbd" ]; do
		_n=$((_n + 1))
		[ $_n -le 100 ] || fail "nbdfuse: no $T/mp/nbd: $(cat "$T/fuse.log")"
		sleep 0.1
	done
	sed -i "s|$_key = \"$T/$_file\"|$_key = \"$T/mp/nbd\"|" "$T/$_who.conf"
	grep -q "$T/mp/nbd" "$T/$_who.conf" ||
	    fail "could not point the $_who at the FUSE file"
}

# fuse_file WHO[.meta] BACKING SIZE [writes|stall]: fuse_disk over nbdkit's
# eval plugin, on the file BACKING (SIZE bytes). Its flushes (and its
# writes, with "writes") fail with EIO while $T/inject exists. (nbdkit
# 1.32's error filter cannot fail a flush.) With "stall", its writes and
# flushes wait instead while $T/stall exists. In the plugin's calls $3 is
# the count, $4 the offset.
fuse_file() {
	_inj="if [ -e '$T/inject' ]; then echo 'EIO injected' >&2; exit 1; fi;"
	_winj=""
	case ${4:-} in
	writes) _winj=$_inj ;;
	stall)	_inj="while [ -e '$T/stall' ]; do sleep 0.2; done;"
		_winj=$_inj ;;
	esac
	fuse_disk "$1" eval \
	    get_size="echo $3" \
	    pread="dd if='$2' iflag=skip_bytes,count_bytes skip=\$4 count=\$3 status=none" \
	    pwrite="$_winj dd of='$2' oflag=seek_bytes conv=notrunc seek=\$4 status=none" \
	    can_flush="exit 0" \
	    flush="$_inj sync '$2'"
}
