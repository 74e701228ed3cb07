#!/bin/sh
# 12-kill-both: duet-primary and duet-mirror both killed with SIGKILL in
# sync mode while fio writes and acknowledged-write stamps are running,
# then restarted, twice: round 1 primary first then the mirror, round 2
# mirror first then the primary. Each round:
#
#  1. every stamp the client saw acknowledged is on both disks right after
#     the kill
#  2. both restarts report their hot activity log; the pair converges
#     (connected, nothing out of sync) with a resync of only what changed:
#     0 < counters.resync_extents (a fresh primary's) <= the 4 MiB regions
#     fio and the stamps wrote that round (64 extents each); no "full
#     resync" after the first one
#  3. with the primary and the mirror stopped cleanly, the volumes are
#     equal byte for byte (then both are started again for round 2)
#
# The resync bounds of both rounds are checked before the test fails, so
# one run reports both.
. "$(dirname "$0")/lib.sh"
need fio
need qemu-io
need timeout

FIO_OFF=0 FIO_SIZE=$((16 * MIB))
STAMP_OFF=$((100 * MIB)) STAMPS=1024
BAD=""

restart_primary() {
	rm -f "$NBD_SOCK"	# the killed primary's: start_primary waits for it
	start_primary
}

# round N ORDER: load, kill both, restart in ORDER (primary-first or
# mirror-first), converge, compare.
round() {
	rd_n=$1 rd_order=$2
	# The stamps of the round before are in the stamp region: clear it, so
	# that a stamp found there was written this round.
	qemu-io -f raw -c "write -z $STAMP_OFF $((STAMPS * 4096))" "$NBD_URI" \
	    >"$T/zero.out" 2>&1 || { show "$T/zero.out"; fail "round $rd_n: qemu-io write -z failed"; }
	rm -f "$T/stamps.out"
	fio_load "load$rd_n" $FIO_OFF $FIO_SIZE 20
	sleep 2
	stamp_writes $STAMPS $STAMP_OFF &
	rd_stamps=$!
	wait_stamps 150
	crash_primary
	crash_mirror
	wait $rd_stamps
	bg_wait $FIO_PID	# its server is gone: it fails, as it should
	echo "round $rd_n: both killed with $(grep -c '^wrote' "$T/stamps.out")" \
	    "of $STAMPS stamps acknowledged"
	check_stamps "$T/primary.img" $STAMP_OFF
	check_stamps "$T/mirror.img" $STAMP_OFF

	rd_hot_p=$(grep -c 'not stopped cleanly' "$PRIMARY_LOG")
	rd_hot_m=$(grep -c 'not stopped cleanly' "$MIRROR_LOG")
	if [ "$rd_order" = primary-first ]; then
		restart_primary
		# Alone for a moment: it serves, and retries the mirror.
		wait_status "$PRIMARY_STATUS" \
		    's["connection"]["state"] != "connected"' 10
		sleep 1
		start_mirror
	else
		start_mirror
		sleep 1
		restart_primary
	fi
	[ "$(grep -c 'not stopped cleanly' "$PRIMARY_LOG")" -gt "$rd_hot_p" ] ||
	    fail "round $rd_n: the primary does not report its hot activity log"
	[ "$(grep -c 'not stopped cleanly' "$MIRROR_LOG")" -gt "$rd_hot_m" ] ||
	    fail "round $rd_n: the mirror does not report its hot activity log"
	wait_in_sync
	rd_moved=$(pstat 's["counters"]["resync_extents"]')
	rd_bound=$(( $(al_extents $FIO_OFF $FIO_SIZE) + $(al_extents $STAMP_OFF $((STAMPS * 4096))) ))
	echo "round $rd_n ($rd_order): resync moved $rd_moved extents" \
	    "($(pstat 's["counters"]["resync_data_bytes"]') bytes of data), bound $rd_bound"
	grep 'resync of changed extents' "$PRIMARY_LOG" | tail -1
	grep 'not stopped cleanly' "$PRIMARY_LOG" | tail -1 | sed 's/^/  primary: /'
	grep 'not stopped cleanly' "$MIRROR_LOG" | tail -1 | sed 's/^/  mirror: /'
	[ "$rd_moved" -gt 0 ] || fail "round $rd_n: nothing was resynced"
	[ "$rd_moved" -le "$rd_bound" ] ||
	    BAD="$BAD; round $rd_n ($rd_order): resync moved $rd_moved extents, more than the $rd_bound written to"
	[ "$(grep -c 'full resync' "$PRIMARY_LOG")" = 1 ] ||
	    fail "round $rd_n: the primary did a full resync"
	[ "$(grep -c 'full resync' "$MIRROR_LOG")" = 1 ] ||
	    fail "round $rd_n: the mirror saw a full resync"

	stop_primary || fail "round $rd_n: duet-primary did not stop cleanly"
	stop_mirror || fail "round $rd_n: duet-mirror did not stop cleanly"
	same_images "round $rd_n ($rd_order)"
	check_stamps "$T/mirror.img" $STAMP_OFF
}

fault_setup sync 256M
start_mirror
start_primary
wait_in_sync
[ "$(grep -c 'full resync' "$PRIMARY_LOG")" = 1 ] ||
    fail "the first connection is not a full resync"

round 1 primary-first
start_mirror
start_primary
wait_in_sync
round 2 mirror-first

[ -z "$BAD" ] || fail "${BAD#; }"
echo "PASS: $TNAME"
