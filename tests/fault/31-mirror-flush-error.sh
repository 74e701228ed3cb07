#!/bin/sh
# 31-mirror-flush-error: the mirror's disk fails a flush (nbdkit's eval
# plugin behind nbdfuse gives a file, kept in $T/backing.img, whose
# flushes fail with EIO while $T/inject exists). A failed fdatasync may
# drop what the page cache held, so the mirror marks every region of its
# activity log changed and says so; the session ends (the primary, told by
# the FLUSH's ack, or the mirror), the primary reconnects, and the resync
# copies those regions (at least the 1 MiB written just before the failed
# flush). The client's FLUSH succeeds: the primary's copy is durable.
# After clean stops the two volumes are equal.
. "$(dirname "$0")/lib.sh"
need qemu-io
need dd
need_fuse eval

fault_setup sync 64M
truncate -s 64M "$T/backing.img"
fuse_file mirror "$T/backing.img" $((64 * MIB))

start_mirror
start_primary
wait_in_sync
qio "write -P 0x11 0 4M"
wait_in_sync
resynced0=$(pstat 's["counters"]["resync_extents"]')

touch "$T/inject"
qemu-io -f raw -c "write -P 0x22 8M 1M" -c flush "$NBD_URI" >"$T/w.out" 2>&1 ||
    fail "write and flush with the mirror's flushes failing: $(cat "$T/w.out")"
grep -qi 'error\|fail' "$T/w.out" &&
    fail "the client saw an error, with the primary's copy durable: $(cat "$T/w.out")"
echo "ok   the client's write and flush succeed (the primary's copy is durable)"
wait_for "$MIRROR_LOG" 'a flush failed: the [1-9][0-9]* regions of the activity log are marked for resync' ||
    fail "the mirror did not mark its activity log: $(tail -5 "$MIRROR_LOG")"
echo "ok   mirror: $(grep -o 'a flush failed: .*' "$MIRROR_LOG" | head -1)"
# Either side ends the session: the primary on the FLUSH's failed ack,
# the mirror once it has taken the failure in.
wait_for "$PRIMARY_LOG" 'lost: (its|said goodbye: the) disk failed a flush' ||
    fail "the session did not end: $(tail -5 "$PRIMARY_LOG")"
echo "ok   primary: $(grep -Eo 'mirror .*lost: (its|said goodbye: the) disk failed a flush' "$PRIMARY_LOG" | head -1)"

rm -f "$T/inject"
wait_in_sync
resynced=$(( $(pstat 's["counters"]["resync_extents"]') - resynced0 ))
# The 1 MiB at 8M is 16 extents of 64 KiB, in one 4 MiB region of the log.
[ "$resynced" -ge 16 ] ||
    fail "the resync after the failed flush moved $resynced extents, want the 16 written at least"
echo "ok   the resync after it copied $resynced extents"

stop_primary || fail "duet-primary exited with $?"
stop_mirror || fail "duet-mirror exited with $?"
cmp "$T/primary.img" "$T/backing.img" || fail "the two volumes differ"
echo "ok   the volumes are equal"
echo "PASS: $TNAME"
