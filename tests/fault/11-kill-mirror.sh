#!/bin/sh
# 11-kill-mirror: duet-mirror killed with SIGKILL in sync mode while fio
# writes and acknowledged-write stamps are running.
#
#  1. the client never notices: fio finishes without an error, and every
#     stamp acknowledged (before, during and after the kill) is on the
#     primary's disk
#  2. while the mirror is away the primary says so and records what it
#     misses: connection not "connected", out_of_sync_extents > 0
#  3. the restarted mirror is brought up to date with only what changed:
#     0 < delta counters.resync_extents <= the 4 MiB activity log regions
#     fio and the stamps wrote (64 extents each: the mirror's hot regions
#     after its crash, and the primary's record of the writes it missed);
#     no "full resync" after the first one
#  4. after clean stops the two volumes are equal byte for byte
. "$(dirname "$0")/lib.sh"
need fio
need qemu-io
need timeout

FIO_OFF=0 FIO_SIZE=$((16 * MIB))
STAMP_OFF=$((100 * MIB)) STAMPS=1024

resync_extents() {
	pstat 's["counters"]["resync_extents"]'
}

fault_setup sync 256M
start_mirror
start_primary
wait_in_sync
[ "$(grep -c 'full resync' "$PRIMARY_LOG")" = 1 ] ||
    fail "the first connection is not a full resync"
before=$(resync_extents)

fio_load load $FIO_OFF $FIO_SIZE 10
sleep 2
stamp_writes $STAMPS $STAMP_OFF &
STAMP_PID=$!
wait_stamps 150
crash_mirror
echo "mirror killed with $(grep -c '^wrote' "$T/stamps.out") stamps acknowledged"

wait_status "$PRIMARY_STATUS" 's["connection"]["state"] != "connected"' 10
wait_status "$PRIMARY_STATUS" 's["out_of_sync_extents"] > 0' 10
w0=$(pstat 's["counters"]["writes"]')
sleep 1
w1=$(pstat 's["counters"]["writes"]')
[ "$w1" -gt "$w0" ] || fail "client writes stopped without the mirror"
wait $STAMP_PID
[ "$(grep -c '^wrote' "$T/stamps.out")" = $STAMPS ] ||
    { show "$T/stamps.out"; fail "stamps failed while the mirror was away"; }
check_stamps "$T/primary.img" $STAMP_OFF
sleep 2
away=$(pstat 's["out_of_sync_extents"]')
echo "while the mirror is away: out_of_sync_extents $away," \
    "$((w1 - w0)) client writes a second"

start_mirror
grep -q 'not stopped cleanly: [0-9]* hot extents' "$MIRROR_LOG" ||
    fail "the restarted mirror does not report its hot activity log"
fio_ok load
wait_in_sync
moved=$(($(resync_extents) - before))
bound=$(( $(al_extents $FIO_OFF $FIO_SIZE) + $(al_extents $STAMP_OFF $((STAMPS * 4096))) ))
echo "resync after the mirror's crash: $moved extents, bound $bound"
grep 'resync of changed extents' "$PRIMARY_LOG" | tail -1
grep 'not stopped cleanly' "$MIRROR_LOG" | tail -1
check_resync "$moved" "$bound" "the mirror's crash"

stop_primary || fail "duet-primary did not stop cleanly"
stop_mirror || fail "duet-mirror did not stop cleanly"
same_images "after the mirror's crash and resync"
check_stamps "$T/mirror.img" $STAMP_OFF
echo "PASS: $TNAME"
