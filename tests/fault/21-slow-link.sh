#!/bin/sh
# 21-slow-link: a slow link between duet-primary and duet-mirror (sync
# mode) under a moderate fio load (4 KiB random writes, 8 deep): first
# `proxy delay 20` (20 ms each way), then `proxy rate 2000000` (2 MB/s each
# way), then pass again.
#
#  1. the client is slowed, not failed: its writes go on in each phase and
#     fio finishes without an error
#  2. the mirror stays connected (counters.reconnects unchanged, so nothing
#     is resynced); if it is dropped all the same, it reconnects and the
#     resync is bounded by the 4 MiB regions written (said on stdout)
#  3. stamps written over the slow link are on the mirror once
#     acknowledged
#  4. after clean stops the two volumes are equal byte for byte
. "$(dirname "$0")/lib.sh"
need fio
need qemu-io
need timeout

FIO_OFF=0 FIO_SIZE=$((16 * MIB))
STAMP_OFF=$((64 * MIB)) STAMPS=200

counter() {
	pstat "s[\"counters\"][\"$1\"]"
}

# phase NAME SECS: client writes and the link's state over SECS seconds.
phase() {
	_w0=$(counter writes)
	sleep "$2"
	_w1=$(counter writes)
	_st=$(pstat 's["connection"]["state"]')
	echo "$1: $(( (_w1 - _w0) / $2 )) client writes/s, mirror $_st," \
	    "inflight $(pstat 's["inflight"]["ops"]') ops"
	[ "$_w1" -gt "$_w0" ] || fail "$1: client writes stopped"
}

fault_setup sync 128M
start_mirror
start_primary
wait_in_sync
r0=$(counter reconnects) x0=$(counter resync_extents)

fio_load load $FIO_OFF $FIO_SIZE 20 --iodepth=8
phase "pass" 2
proxy delay 20
phase "delay 20 ms" 5
proxy rate 2000000
stamp_writes $STAMPS $STAMP_OFF &
STAMP_PID=$!
phase "rate 2 MB/s" 5
wait $STAMP_PID
[ "$(grep -c '^wrote' "$T/stamps.out")" = $STAMPS ] ||
    { show "$T/stamps.out"; fail "stamps failed over the slow link"; }
check_stamps "$T/mirror.img" $STAMP_OFF
proxy pass
phase "pass again" 2
fio_ok load
grep -E '^ +(clat|lat) .*(max|avg)' "$T/fio-load.out" | head -2

wait_in_sync
drops=$(($(counter reconnects) - r0))
moved=$(($(counter resync_extents) - x0))
if [ "$drops" -eq 0 ]; then
	echo "the mirror stayed connected; resync moved $moved extents"
	[ "$moved" -eq 0 ] || fail "resync moved $moved extents without a reconnect"
else
	bound=$(( $(al_extents $FIO_OFF $FIO_SIZE) + $(al_extents $STAMP_OFF $((STAMPS * 4096))) ))
	echo "NOTE: the mirror was dropped $drops times over the slow link" \
	    "($(grep -c 'lost:' "$PRIMARY_LOG") 'lost:' lines); it recovered," \
	    "resync moved $moved extents, bound $bound"
	grep 'lost:' "$PRIMARY_LOG" | head -3
	[ "$moved" -le "$bound" ] ||
	    fail "resync moved $moved extents, more than the $bound written to"
fi
[ "$(grep -c 'full resync' "$PRIMARY_LOG")" = 1 ] ||
    fail "the primary did a full resync after the first"
[ "$(grep -c 'full resync' "$MIRROR_LOG")" = 1 ] ||
    fail "the mirror saw a full resync after the first"

stop_primary || fail "duet-primary did not stop cleanly"
stop_mirror || fail "duet-mirror did not stop cleanly"
same_images "after the slow link"
echo "PASS: $TNAME"
