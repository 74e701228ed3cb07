#!/bin/sh
# 33-mirror-disk-stall: the mirror's disk stops completing writes and
# flushes (nbdkit's eval plugin behind nbdfuse waits while $T/stall
# exists), while its event loop goes on answering pings. The window is
# far from full, so only how long the client has waited on the mirror can
# tell: after primary.congestion_timeout (3 s here) the primary drops the
# mirror and answers its client, which would otherwise wait for ever. Once the
# disk moves again, the resync brings the mirror level, and after clean
# stops the two volumes are equal.
. "$(dirname "$0")/lib.sh"
need qemu-io
need dd
need_fuse eval

fault_setup sync 64M
sed -i 's/^  mode = "sync";$/&\n  ping_interval = 1;\n  idle_timeout = 30;\n  congestion_timeout = 3;\n  reconnect_max = 2;/' \
    "$T/primary.conf"
grep -q 'congestion_timeout = 3' "$T/primary.conf" ||
    fail "could not set the primary's timeouts"
truncate -s 64M "$T/backing.img"
fuse_file mirror "$T/backing.img" $((64 * MIB)) stall

start_mirror
start_primary
wait_in_sync

touch "$T/stall"
timeout 60 qemu-io -f raw -c "write -f -P 0x33 1M 4k" "$NBD_URI" \
    >"$T/w.out" 2>&1
rc=$?
[ $rc -eq 124 ] && fail "the FUA write still waits after 60 s"
[ $rc -eq 0 ] || fail "the FUA write failed ($rc): $(cat "$T/w.out")"
echo "ok   the client's FUA write is answered"
grep -q 'lost: operation [0-9]* not applied within 3 s; going on alone' \
    "$PRIMARY_LOG" ||
    fail "the primary did not say why it dropped the mirror: $(tail -5 "$PRIMARY_LOG")"
echo "ok   primary: $(grep -o 'lost: operation .*going on alone' "$PRIMARY_LOG" | head -1)"

rm -f "$T/stall"
wait_in_sync
echo "ok   in sync again once the disk moves"
stop_primary || fail "duet-primary exited with $?"
stop_mirror || fail "duet-mirror exited with $?"
cmp "$T/primary.img" "$T/backing.img" || fail "the two volumes differ"
echo "ok   the volumes are equal"
echo "PASS: $TNAME"
