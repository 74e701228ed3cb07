#!/bin/sh
# 32-mirror-metadata-error: the mirror's metadata file fails its writes
# (nbdkit's eval plugin behind nbdfuse gives a file, kept in
# $T/metaback.img, whose writes and flushes fail with EIO while $T/inject
# exists). A write the mirror cannot record in its activity log could be
# lost in a power cut with no record on either side, so the mirror ends
# the session at the first such write and refuses the primary's reconnects;
# the primary goes on alone, its clients' writes succeed, and it records
# what changes. The mirror exits 74 at its stop. Restarted with the file
# writable, it gets those extents by resync, and the volumes are equal.
. "$(dirname "$0")/lib.sh"
need qemu-io
need dd
need_fuse eval

fault_setup sync 64M
# A valid metadata file first, from a normal start.
start_mirror
stop_mirror || fail "duet-mirror exited with $? at its first stop"
cp "$T/mirror.meta" "$T/metaback.img"
truncate -s 1M "$T/metaback.img"
fuse_file mirror.meta "$T/metaback.img" $((1024 * 1024)) writes

start_mirror
start_primary
wait_in_sync
qio "write -P 0x11 0 4M"
wait_in_sync

# 32M is a 4 MiB region of the activity log not yet hot: making it hot
# writes the metadata.
touch "$T/inject"
qemu-io -f raw -c "write -P 0x22 32M 1M" -c flush "$NBD_URI" >"$T/w.out" 2>&1 ||
    fail "write and flush with the mirror's metadata failing: $(cat "$T/w.out")"
grep -qi 'error\|fail' "$T/w.out" &&
    fail "the client saw an error: $(cat "$T/w.out")"
echo "ok   the client's write and flush succeed"
wait_for "$MIRROR_LOG" "volume.metadata failed \(see its log\): it takes no writes until it is restarted; closing" ||
    fail "the mirror did not end the session: $(tail -5 "$MIRROR_LOG")"
grep -q 'volume.metadata: .*EIO\|volume.metadata: .*Input/output error' \
    "$MIRROR_LOG" || fail "the mirror did not log the failed write: $(tail -5 "$MIRROR_LOG")"
echo "ok   mirror: $(grep -o 'volume.metadata: .*' "$MIRROR_LOG" | head -1)"
# Reconnects are refused with the same reason.
wait_for "$PRIMARY_LOG" "refused.*takes no writes until it is restarted" ||
    fail "the primary was not refused: $(tail -5 "$PRIMARY_LOG")"
echo "ok   primary: $(grep -o 'refused.*takes no writes until it is restarted' "$PRIMARY_LOG" | head -1)"
qio "write -P 0x33 40M 1M"
echo "ok   the primary goes on alone"

stop_mirror
rc=$?
[ "$rc" = 74 ] || fail "duet-mirror exited with $rc at its stop, want 74"
echo "ok   duet-mirror exits 74"

rm -f "$T/inject"
start_mirror
wait_in_sync
echo "ok   restarted with the file writable: in sync again"
stop_primary || fail "duet-primary exited with $?"
stop_mirror || fail "duet-mirror exited with $?"
cmp "$T/primary.img" "$T/mirror.img" || fail "the two volumes differ"
echo "ok   the volumes are equal"
echo "PASS: $TNAME"
