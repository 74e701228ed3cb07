#!/bin/sh
# 40-primary-eio: the primary's disk returns EIO on reads (nbdkit's error
# filter behind nbdfuse gives a file whose reads fail once $T/inject
# exists). The primary asks the mirror for the data and answers the
# client with it, says "disk": "failed", and from then on serves reads
# from the mirror and sends writes to the mirror alone, under a fio load
# that verifies what it wrote. A write and flush the mirror never applied
# (the link cut under them) fail with EIO. With the mirror gone too, reads
# fail; and duet-primary, restarted, refuses the disk (its data is stale).
# Mode sync, or $EIO_MODE (41-primary-eio-async).
. "$(dirname "$0")/lib.sh"
need fio
need qemu-io
need_fuse file

fault_setup "${EIO_MODE:-sync}" 64M
truncate -s 64M "$T/backing.img"
fuse_disk primary file "$T/backing.img" --filter=error \
    error=EIO error-pread-rate=100% error-pread-file="$T/inject"

start_mirror
start_primary
wait_in_sync
qemu-io -f raw -c "write -P 0x5a 0 8M" "$NBD_URI" >"$T/w1.out" 2>&1 ||
    fail "write before the fault: $(cat "$T/w1.out")"
wait_in_sync
[ "$(pstat 's["disk"]')" = up-to-date ] || fail "disk not up-to-date before the fault"

# From here every read of the local disk fails; nothing may be cached.
sync
echo 3 >/proc/sys/vm/drop_caches
touch "$T/inject"
bg timeout -k 5 60 fio --name=degraded --ioengine=nbd --uri="$NBD_URI" \
    --rw=randwrite --bs=4k --iodepth=8 --offset=16M --size=4M \
    --verify=crc32c --do_verify=1 --verify_state_save=0 --output="$T/fio.out"
fio_pid=$LAST_PID
qemu-io -f raw -c "read -P 0x5a 0 8M" "$NBD_URI" >"$T/r1.out" 2>&1 ||
    fail "read with the local disk failing: $(cat "$T/r1.out")"
echo "ok   8 MiB read back while every local read fails"
[ "$(pstat 's["disk"]')" = failed ] || fail "status disk is not \"failed\""
[ "$(pstat 's["counters"]["remote_reads"] > 0')" = True ] ||
    fail "no remote reads counted"
grep -q 'the disk is failed' "$PRIMARY_LOG" || fail "no log line about the failed disk"

qemu-io -f raw -c "write -P 0x66 8M 1M" -c "read -P 0x66 8M 1M" "$NBD_URI" \
    >"$T/w2.out" 2>&1 || fail "write+read after the failure: $(cat "$T/w2.out")"
echo "ok   a write after the failure reads back (from the mirror)"
bg_wait "$fio_pid" || fail "fio exited with $?: $(tail -20 "$T/fio.out")"
grep -q 'err= *0' "$T/fio.out" || fail "fio: $(tail -20 "$T/fio.out")"
grep -q 'READ: bw=' "$T/fio.out" || fail "fio did not verify: $(cat "$T/fio.out")"
echo "ok   fio wrote and verified 4 MiB with the local disk failed"

# Writes went to the mirror alone: the backing file never saw 0x66.
python3 - "$T/backing.img" "$T/mirror.img" <<'PY' || fail "the images are not as expected"
import sys
b = open(sys.argv[1], "rb"); m = open(sys.argv[2], "rb")
b.seek(8 << 20); m.seek(8 << 20)
assert b.read(1 << 20) != b"\x66" * (1 << 20), "the failed disk was written"
assert m.read(1 << 20) == b"\x66" * (1 << 20), "the mirror lacks the write"
m.seek(0)
assert m.read(8 << 20) == b"\x5a" * (8 << 20), "the mirror lacks the first write"
PY
echo "ok   the failed disk was left alone; the mirror has every write"

# The mirror holds the only copy now: a write and flush in flight when the
# link is lost happened nowhere, and must fail, whatever the mode.
proxy blackhole
bg qemu-io -f raw -c "write -P 0x77 9M 64k" -c flush "$NBD_URI" >"$T/w3.out" 2>&1
w_pid=$LAST_PID
sleep 1
kill -0 "$w_pid" 2>/dev/null ||
    fail "a write and flush the mirror never got were answered: $(cat "$T/w3.out")"
proxy reset
bg_wait "$w_pid"
grep -q 'Input/output error' "$T/w3.out" ||
    fail "a write and flush lost with the link did not fail with EIO: $(cat "$T/w3.out")"
echo "ok   a write and flush lost with the link fail: $(grep -m1 'Input/output error' "$T/w3.out")"

stop_mirror || fail "duet-mirror exited with $?"
if qemu-io -f raw -c "read 0 4k" "$NBD_URI" >"$T/r2.out" 2>&1 &&
    ! grep -qi 'error' "$T/r2.out"; then
	fail "a read succeeded with the disk failed and no mirror"
fi
echo "ok   with no mirror, reads fail: $(grep -i error "$T/r2.out" | head -1)"
stop_primary || fail "duet-primary exited with $?"

# The failed disk is recorded: duet-primary will not serve it again.
rm -f "$T/inject"
"$PRIMARY" -c "$T/primary.conf" -f >"$T/again.log" 2>&1
rc=$?
[ $rc -eq 65 ] || fail "restart on the failed disk exited with $rc, want 65: $(cat "$T/again.log")"
grep -q 'its data is stale' "$T/again.log" ||
    fail "no reason given for the refusal: $(cat "$T/again.log")"
echo "ok   duet-primary refuses the failed disk (exit 65): $(grep -o 'this disk failed[^(]*' "$T/again.log")"
echo "PASS: $TNAME"
