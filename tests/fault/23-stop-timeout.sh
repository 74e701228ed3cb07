#!/bin/sh
# 23-stop-timeout: a stop the mirror cannot let finish ends after
# primary.stop_timeout, and nothing is lost.
#
#  1. Sync mode, primary.stop_timeout 2 s. The link is blackholed
#     (duet-faultproxy) while a client writes, so its requests wait for
#     acks that never come.
#  2. SIGTERM: the primary exits 0 within 2 s plus a margin, well before
#     primary.idle_timeout (15 s) would drop the link, and its warning
#     names primary.stop_timeout and counts the requests still in flight.
#  3. Restarted with the link passing again, it finds its metadata not
#     clean, resyncs the hot extents, and the volumes end equal.
. "$(dirname "$0")/lib.sh"
need qemu-io
need timeout

fault_setup sync 256M
sed -i 's/^  mode = "sync";$/&\n  stop_timeout = 2;/' "$T/primary.conf"
grep -q '^  stop_timeout = 2;$' "$T/primary.conf" ||
    fail "cannot set primary.stop_timeout in $T/primary.conf"
start_mirror
start_primary
wait_in_sync
qio 'write -P 1 0 1M'

proxy blackhole
# Writes the mirror never acknowledges: the client waits for its replies.
bg timeout -k 5 30 qemu-io -f raw -c 'write -P 2 1M 64k' \
    -c 'write -P 3 2M 64k' "$NBD_URI"
QIO_PID=$LAST_PID
sleep 2

t0=$(date +%s%N)
stop_primary
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "SIGTERM with the mirror blackholed: exit $rc after $ms ms"
[ $rc = 0 ] || fail "duet-primary exited $rc after its stop timeout"
[ $ms -ge 1900 ] ||
    fail "duet-primary left after $ms ms, before primary.stop_timeout (2 s)"
[ $ms -le 6000 ] ||
    fail "duet-primary took $ms ms to stop, primary.stop_timeout is 2 s"
grep 'stopping after primary.stop_timeout' "$PRIMARY_LOG" ||
    fail "no warning naming primary.stop_timeout: $(tail -5 "$PRIMARY_LOG")"
grep -q 'stopping after primary.stop_timeout (2 s) with 1 clients, [1-9][0-9]* requests in flight' \
    "$PRIMARY_LOG" ||
    fail "the warning does not count the requests in flight"
bg_wait $QIO_PID		# it lost its server: its exit status is moot

proxy pass
rm -f "$NBD_SOCK"
start_primary
grep -q 'not stopped cleanly: [0-9]* hot extents' "$PRIMARY_LOG" ||
    fail "the restarted primary does not report its hot activity log"
wait_in_sync
echo "resync after the timed-out stop: $(pstat 's["counters"]["resync_extents"]') extents"
stop_primary || fail "duet-primary did not stop cleanly"
grep -c 'stopping after primary.stop_timeout' "$PRIMARY_LOG" | grep -qx 1 ||
    fail "a clean stop warned about primary.stop_timeout"
stop_mirror || fail "duet-mirror did not stop cleanly"
same_images "after a stop that timed out"
echo "PASS: $TNAME"
