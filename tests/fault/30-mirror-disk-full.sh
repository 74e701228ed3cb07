#!/bin/sh
# 30-mirror-disk-full: the mirror's volume file (64 MiB, sparse) lives on a
# 48 MiB tmpfs, so writes to it fail with ENOSPC once fio has filled it.
#
#  1. the primary keeps serving: fio (a sequential fill of 56 MiB, then
#     random writes over it) finishes without an error, and stamps written
#     while the mirror's disk is full are acknowledged and on the primary
#  2. the failures are recorded and said: the primary's counters.errors
#     and out_of_sync_extents > 0, the mirror's counters.errors > 0, the
#     primary's log names the error ("No space left on device")
#  3. the mirror is stopped, its volume moved off the tmpfs (to $T, same
#     metadata file) and restarted: the resync copies only the recorded
#     extents (0 < delta counters.resync_extents <= the primary's
#     out_of_sync_extents + the mirror's changed_extents before the stop
#     + 1 for the last write, which the mirror records when the session
#     ends since no frontier confirmed it);
#     no "full resync" after the first
#  4. after clean stops the two volumes are equal byte for byte
. "$(dirname "$0")/lib.sh"
need fio
need qemu-io
need timeout
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for a small tmpfs"; exit 77; }

FIO_SIZE=$((56 * MIB))
STAMP_OFF=$((60 * MIB)) STAMPS=256
SMALL=$T/small

# The tmpfs goes once the mirror no longer holds its file, before lib.sh's
# cleanup removes $T.
cleanup_tmpfs() {
	_rc0=$?
	stop_mirror >/dev/null 2>&1
	if mountpoint -q "$SMALL" 2>/dev/null; then
		umount "$SMALL" 2>/dev/null || umount -l "$SMALL"
	fi
	_setrc() { return "$1"; }
	_setrc $_rc0
	cleanup
}
trap cleanup_tmpfs EXIT

counter() {
	pstat "s[\"counters\"][\"$1\"]"
}

fault_setup sync 64M
mkdir "$SMALL"
mount -t tmpfs -o size=48m tmpfs "$SMALL" 2>"$T/mount.err" ||
    { echo "SKIP: cannot mount a tmpfs: $(cat "$T/mount.err")"; exit 77; }
sed "s|path = \"$T/mirror.img\"|path = \"$SMALL/mirror.img\"|" \
    "$T/mirror.conf" >"$T/mirror-small.conf"
grep -q "$SMALL/mirror.img" "$T/mirror-small.conf" ||
    fail "cannot point the mirror's volume at the tmpfs"

start_mirror "$T/mirror-small.conf"
start_primary
wait_in_sync
[ "$(grep -c 'full resync' "$PRIMARY_LOG")" = 1 ] ||
    fail "the first connection is not a full resync"
e0=$(counter errors)

# 56 MiB of data into a 48 MiB filesystem, then random writes over it;
# the stamps go after it, at 60 MiB.
bg timeout -k 5 90 fio --ioengine=nbd --uri="$NBD_URI" \
    --output="$T/fio.out" \
    --name=fill --rw=write --bs=1M --iodepth=4 --size=$FIO_SIZE \
    --name=random --stonewall --rw=randwrite --bs=4k --iodepth=16 \
    --size=$FIO_SIZE --time_based --runtime=4 2>"$T/fio.err"
FIO_PID=$LAST_PID
wait_status "$PRIMARY_STATUS" "s['counters']['errors'] > $e0" 30
stamp_writes $STAMPS $STAMP_OFF
[ "$(grep -c '^wrote' "$T/stamps.out")" = $STAMPS ] ||
    { show "$T/stamps.out"; fail "stamps failed while the mirror's disk is full"; }
check_stamps "$T/primary.img" $STAMP_OFF
bg_wait $FIO_PID
rc=$?
[ $rc = 0 ] || { show "$T/fio.err"; fail "fio failed (exit $rc)"; }
[ "$(grep -c 'err= 0' "$T/fio.out")" = 2 ] || { show "$T/fio.out"; fail "fio saw errors"; }
# The mirror records the writes no frontier has confirmed when the session
# ends: one more write (stamp 0 again, on a failed extent) confirms fio's.
qemu-io -f raw -c "write -P 1 $STAMP_OFF 4k" "$NBD_URI" >"$T/last.out" 2>&1 ||
    { show "$T/last.out"; fail "qemu-io write failed"; }

errs=$(($(counter errors) - e0))
oos=$(pstat 's["out_of_sync_extents"]')
merrs=$(mstat 's["counters"]["errors"]')
mchanged=$(mstat 's["changed_extents"]')
echo "mirror disk full: primary errors $errs, out_of_sync_extents $oos," \
    "connection $(pstat 's["connection"]["state"]');" \
    "mirror errors $merrs, changed_extents $mchanged; tmpfs:" \
    "$(df -k "$SMALL" | awk 'NR == 2 { print $3 " KiB used of " $2 }')"
grep -m1 'failed there' "$PRIMARY_LOG"
[ "$errs" -gt 0 ] || fail "the primary counts no error"
[ "$oos" -gt 0 ] || fail "the failed writes are not recorded (out_of_sync_extents 0)"
[ "$merrs" -gt 0 ] || fail "the mirror counts no error"
grep -q 'failed there: No space left on device' "$PRIMARY_LOG" ||
    fail "the primary's log does not name the error"
# ... once a second at most, not once per failed write.
nlog=$(grep -c 'failed there' "$PRIMARY_LOG")
[ "$nlog" -lt "$errs" ] && [ "$nlog" -le 60 ] ||
    fail "$nlog log lines for $errs failed writes: not rate-limited"
mlog=$(grep -c 'No space left' "$MIRROR_LOG")
[ "$mlog" -le 60 ] || fail "the mirror logged $mlog lines for its errors"

# A bigger disk: the same file and metadata, off the tmpfs.
x0=$(counter resync_extents)
stop_mirror || fail "duet-mirror did not stop cleanly"
cp --sparse=always "$SMALL/mirror.img" "$T/mirror.img" ||
    fail "cannot copy the mirror's volume off the tmpfs"
umount "$SMALL" || fail "cannot unmount the tmpfs"
start_mirror "$T/mirror.conf"
wait_in_sync
moved=$(($(counter resync_extents) - x0))
bound=$((oos + mchanged + 1))	# + the last write
echo "resync onto the bigger disk: $moved extents" \
    "($(counter resync_data_bytes) bytes of data in all resyncs), bound $bound"
grep 'resync of changed extents' "$PRIMARY_LOG" | tail -1
[ "$moved" -gt 0 ] || fail "nothing was resynced onto the bigger disk"
[ "$moved" -le "$bound" ] ||
    fail "resync moved $moved extents, more than the $bound recorded"
[ "$(grep -c 'full resync' "$PRIMARY_LOG")" = 1 ] ||
    fail "the primary did a full resync onto the bigger disk"
[ "$(grep -c 'full resync' "$MIRROR_LOG")" = 1 ] ||
    fail "the mirror saw a full resync after the first"

stop_primary || fail "duet-primary did not stop cleanly"
stop_mirror || fail "duet-mirror did not stop cleanly"
same_images "after the mirror's disk was replaced"
check_stamps "$T/mirror.img" $STAMP_OFF
echo "PASS: $TNAME"
