#!/bin/sh
# 10-kill-primary: duet-primary killed with SIGKILL in sync mode while fio
# writes and acknowledged-write stamps are running.
#
#  1. every stamp the client saw acknowledged is on the mirror (and on the
#     primary's disk) right after the kill
#  2. the restarted primary marks its hot activity log regions, reconnects
#     and resyncs only those: 0 < counters.resync_extents <= the 4 MiB
#     regions fio and the stamps wrote (64 extents each); no "full resync"
#     after the first one
#  3. after clean stops the two volumes are equal byte for byte
. "$(dirname "$0")/lib.sh"
need fio
need qemu-io
need timeout

FIO_OFF=0 FIO_SIZE=$((16 * MIB))
STAMP_OFF=$((100 * MIB)) STAMPS=1024

fault_setup sync 256M
start_mirror
start_primary
wait_in_sync
[ "$(grep -c 'full resync' "$PRIMARY_LOG")" = 1 ] ||
    fail "the first connection is not a full resync"

fio_load load $FIO_OFF $FIO_SIZE 20
sleep 2
stamp_writes $STAMPS $STAMP_OFF &
STAMP_PID=$!
wait_stamps 150
crash_primary
wait $STAMP_PID
acked=$(grep -c '^wrote' "$T/stamps.out")
echo "primary killed with $acked of $STAMPS stamps acknowledged"
# The client loses its server: fio fails, as it should.
bg_wait $FIO_PID
check_stamps "$T/mirror.img" $STAMP_OFF
check_stamps "$T/primary.img" $STAMP_OFF

# The mirror kept running; the restarted primary resyncs its hot regions.
# (start_primary waits for the NBD socket: not the dead primary's.)
rm -f "$NBD_SOCK"
start_primary
grep -q 'not stopped cleanly: [0-9]* hot extents' "$PRIMARY_LOG" ||
    fail "the restarted primary does not report its hot activity log"
wait_in_sync
moved=$(pstat 's["counters"]["resync_extents"]')
bound=$(( $(al_extents $FIO_OFF $FIO_SIZE) + $(al_extents $STAMP_OFF $((STAMPS * 4096))) ))
echo "resync after the primary's crash: $moved extents" \
    "($(pstat 's["counters"]["resync_data_bytes"]') bytes of data), bound $bound"
grep 'resync of changed extents' "$PRIMARY_LOG" | tail -1
check_resync "$moved" "$bound" "the primary's crash"

stop_primary || fail "duet-primary did not stop cleanly"
stop_mirror || fail "duet-mirror did not stop cleanly"
same_images "after the primary's crash and resync"
check_stamps "$T/mirror.img" $STAMP_OFF
echo "PASS: $TNAME"
