#!/bin/sh
# 20-partition: the link between duet-primary and duet-mirror (sync mode;
# PARTITION_MODE=async for 22-partition-async)
# breaks under a running fio load, in four ways:
#
#  A. reset: both TCP connections get an RST (then pass)
#  B. refuse: connections are closed, new ones too, for 3 s; then pass
#  C. blackhole under a load that fills the in-flight window (4 MiB
#     writes, 16 deep: 64 MiB, primary.max_inflight_bytes): writes stall
#     until the window has been full, or its oldest write unapplied, for
#     primary.congestion_timeout (3 s here), the primary drops the mirror
#     ("window full" or "not applied"), and writes go on alone; then reset
#     and pass
#  D. blackhole under a light load (4 KiB writes, 16 deep: the window is
#     far from full): once the oldest write has waited
#     primary.congestion_timeout, or after primary.idle_timeout (8 s here)
#     without a byte from the mirror, the primary must drop the silent
#     mirror and let the client's writes go on; then reset and pass
#
# The link's timers are set short (primary.ping_interval 2 s,
# primary.reconnect_max 2 s), and the primary's log must name them.
#
# Each case: fio finishes without an error; the primary drops the mirror
# (counters.reconnects + 1), reconnects by itself, and resyncs only what
# changed: 0 < delta counters.resync_extents <= the 4 MiB activity log
# regions fio wrote (64 extents each); no "full resync" after the first;
# acknowledged stamps written during C are on the mirror afterwards. At the
# end, after clean stops, the volumes are equal byte for byte.
#
# Failures of the resync bound and of D's 13 s limit are collected, so one
# run reports every case.
. "$(dirname "$0")/lib.sh"
need fio
need qemu-io
need timeout

BAD=""

counter() {
	pstat "s[\"counters\"][\"$1\"]"
}

# load NAME OFF SIZE BS RUNTIME: fio_load with BS-sized writes.
load() {
	fio_load "$1" "$2" "$3" "$5" --bs="$4"
	FIO_NAME=$1
}

load_ok() {
	fio_ok "$FIO_NAME"
}

# secs_until EXPR SECS: seconds (tenths) until EXPR holds on the primary's
# status, or "never" after SECS.
secs_until() {
	_t0=$(date +%s%N)
	until [ "$(pstat "bool($1)")" = True ]; do
		if [ $(( ($(date +%s%N) - _t0) / 1000000000 )) -ge "$2" ]; then
			echo never
			return 1
		fi
		sleep 0.1
	done
	_ms=$(( ($(date +%s%N) - _t0) / 1000000 ))
	echo "$((_ms / 1000)).$((_ms % 1000 / 100))"
}

# resynced CASE BEFORE BOUND: the resync since BEFORE moved 0 < n <= BOUND.
resynced() {
	wait_in_sync
	_moved=$(($(counter resync_extents) - $2))
	echo "$1: resync moved $_moved extents, bound $3"
	grep 'resync of changed extents' "$PRIMARY_LOG" | tail -1
	[ "$_moved" -gt 0 ] || fail "$1: nothing was resynced"
	[ "$_moved" -le "$3" ] ||
	    BAD="$BAD; $1: resync moved $_moved extents, more than the $3 written to"
	[ "$(grep -c 'full resync' "$PRIMARY_LOG")" = 1 ] ||
	    fail "$1: the primary did a full resync"
}

MODE=${PARTITION_MODE:-sync}
fault_setup "$MODE" 256M
sed -i "s/^  mode = \"$MODE\";\$/&\n  ping_interval = 2;\n  idle_timeout = 8;\n  congestion_timeout = 3;\n  reconnect_max = 2;/" \
    "$T/primary.conf"
grep -q '^  reconnect_max = 2;$' "$T/primary.conf" ||
    fail "cannot set the timers in $T/primary.conf"
start_mirror
start_primary
wait_in_sync
[ "$(grep -c 'full resync' "$PRIMARY_LOG")" = 1 ] ||
    fail "the first connection is not a full resync"
SMALL_BOUND=$(al_extents 0 $((16 * MIB)))

# ---- A: connection reset ------------------------------------------------
r0=$(counter reconnects) x0=$(counter resync_extents)
load reset 0 16M 4k 5
sleep 2
proxy reset
t=$(secs_until "s['counters']['reconnects'] > $r0" 10) ||
    fail "A: the primary did not notice a reset connection in 10 s"
echo "A: reset noticed after $t s"
load_ok
resynced "A (reset)" "$x0" "$SMALL_BOUND"

# ---- B: refused for 3 s ---------------------------------------------------
r0=$(counter reconnects) x0=$(counter resync_extents)
load refuse 0 16M 4k 7
sleep 2
proxy refuse
t=$(secs_until "s['counters']['reconnects'] > $r0" 10) ||
    fail "B: the primary did not notice a closed connection in 10 s"
echo "B: refusal noticed after $t s"
sleep 3
proxy pass
t=$(secs_until "s['connection']['state'] == 'connected'" 30) ||
    fail "B: no reconnection within 30 s of pass"
echo "B: reconnected $t s after pass"
grep -q 'retrying (every 2 s at most)' "$PRIMARY_LOG" ||
    fail "B: the primary's log does not give primary.reconnect_max (2 s)"
load_ok
resynced "B (refuse 3 s)" "$x0" "$SMALL_BOUND"

# ---- C: blackhole, window full -------------------------------------------
STAMP_OFF=$((200 * MIB)) STAMPS=256
r0=$(counter reconnects) x0=$(counter resync_extents)
load window $((128 * MIB)) 64M 4M 15
sleep 2
proxy blackhole
stamp_writes $STAMPS $STAMP_OFF &
STAMP_PID=$!
t=$(secs_until "s['counters']['reconnects'] > $r0" 8) ||
    fail "C: the primary did not drop a blackholed mirror with a full window in 8 s (congestion_timeout 3 s)"
echo "C: blackholed mirror dropped after $t s"
grep -Eq 'window full for 3 s|not applied within 3 s' "$PRIMARY_LOG" ||
    fail "C: the primary does not give congestion_timeout (3 s)"
w0=$(counter writes)
sleep 1
w1=$(counter writes)
[ "$w1" -gt "$w0" ] || fail "C: client writes do not go on without the mirror"
wait $STAMP_PID
[ "$(grep -c '^wrote' "$T/stamps.out")" = $STAMPS ] ||
    { show "$T/stamps.out"; fail "C: stamps failed during the blackhole"; }
proxy reset
proxy pass
load_ok
resynced "C (blackhole, window full)" "$x0" \
    $(( $(al_extents $((128 * MIB)) $((64 * MIB))) + $(al_extents $STAMP_OFF $((STAMPS * 4096))) ))
check_stamps "$T/mirror.img" $STAMP_OFF

# ---- D: blackhole, light load --------------------------------------------
r0=$(counter reconnects) x0=$(counter resync_extents)
load light 0 16M 4k 16
sleep 2
proxy blackhole
sleep 2
w0=$(counter writes)
if t=$(secs_until "s['counters']['reconnects'] > $r0" 11); then
	echo "D: blackholed mirror dropped after $((${t%.*} + 2)) s"
	# C's drop and this one, each by a timer.
	[ "$(grep -Ec 'window full for 3 s|not applied within 3 s|nothing from the mirror for 8 s' "$PRIMARY_LOG")" -ge 2 ] ||
	    BAD="$BAD; D: the primary's log does not give congestion_timeout (3 s) or idle_timeout (8 s)"
	w0=$(counter writes)
	sleep 1
	[ "$(counter writes)" -gt "$w0" ] ||
	    BAD="$BAD; D: client writes do not go on after the drop"
else
	w1=$(counter writes)
	echo "D: 13 s into the blackhole the primary still says" \
	    "$(pstat 's["connection"]["state"]'), inflight $(pstat 's["inflight"]');" \
	    "client writes from 2 s to 20 s: $w0 -> $w1"
	BAD="$BAD; D: a blackholed mirror with $(pstat 's["inflight"]["ops"]') writes in flight (window not full) is not dropped in 13 s (idle_timeout 8 s): sync clients stall ($((w1 - w0)) writes from 2 s to 13 s)"
fi
proxy reset
proxy pass
load_ok
resynced "D (blackhole, light load)" "$x0" "$SMALL_BOUND"

stop_primary || fail "duet-primary did not stop cleanly"
stop_mirror || fail "duet-mirror did not stop cleanly"
same_images "after the partitions"
[ "$(grep -c 'full resync' "$MIRROR_LOG")" = 1 ] ||
    fail "the mirror saw a full resync after the first"
[ -z "$BAD" ] || fail "${BAD#; }"
echo "PASS: $TNAME"
