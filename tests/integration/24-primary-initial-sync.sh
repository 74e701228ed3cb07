#!/bin/sh
# 24-primary-initial-sync: the primary starts with its mirror down and
# serves clients anyway (qemu-img convert of a random 32 MiB image into
# the export; the log says the mirror is unreachable and that it retries).
# Two fio clients run while the mirror is started, so that the full sync
# copies the data while clients keep writing: a randwrite --verify at 200
# writes/s on 40M..48M (its verify shows the client's view is right), and
# a randwrite burst at full speed, overlapping itself, on 32M..40M. After a
# clean stop of both daemons, the mirror's volume equals the primary's.
#
# The sync skips holes: its "resync complete: ... N bytes of data" counts the
# 1 MiB pieces that hold data, so N is the 32 MiB qemu-img wrote plus at
# most the 16 MiB fio writes to, not the 64 MiB volume.
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"
need fio
need qemu-img

SIZE=64M
MIB=1048576
mk_certs
cd "$T" || fail "cd $T"
write_conf "$T/mirror.conf"
write_primary_conf "$T/primary.conf" sync
head -c 32M /dev/urandom >"$T/src.raw"

start_primary
wait_for "$PRIMARY_LOG" "mirror 127\.0\.0\.1:$PORT: .*retrying" ||
    fail "no log line about the unreachable mirror"
echo "ok   $(grep -E 'mirror .*retrying' "$PRIMARY_LOG" | head -1)"

timeout 60 qemu-img convert -n -f raw -O raw "$T/src.raw" "$NBD_URI" ||
    fail "qemu-img convert with the mirror down failed"
timeout 60 qemu-img compare -f raw -F raw "$T/src.raw" "$NBD_URI" \
    >"$T/compare.out" 2>&1 ||
    fail "qemu-img compare: $(cat "$T/compare.out")"
echo "ok   qemu-img convert with the mirror down: $(cat "$T/compare.out")"
grep -q 'resync complete' "$PRIMARY_LOG" && fail "a sync without a mirror?"

# 2048 writes at 200/s: about 10 s, then the verify (the primary retries
# 1, 3, 7 s after its start: the mirror is back by the third at the latest).
bg timeout -k 5 60 fio --name=during --ioengine=nbd --uri="$NBD_URI" \
    --rw=randwrite --bs=4k --iodepth=8 --offset=40M --size=8M \
    --rate_iops=200 --verify=crc32c --do_verify=1 --verify_state_save=0 \
    --output="$T/fio.out"
fio_pid=$LAST_PID
sleep 1
_alive "$fio_pid" || fail "fio ended early: $(cat "$T/fio.out")"
# The burst: 7 s, past the primary's third retry.
bg timeout -k 5 60 fio --name=burst --ioengine=nbd --uri="$NBD_URI" \
    --rw=randwrite --bsrange=4k-64k --iodepth=16 --offset=32M --size=8M \
    --norandommap --time_based --runtime=7 --verify_state_save=0 \
    --output="$T/burst.out"
burst_pid=$LAST_PID
sleep 0.5
start_mirror
wait_synced 1
_alive "$fio_pid" ||
    fail "fio was done before the sync was (nothing written during it)"
_alive "$burst_pid" ||
    fail "the fio burst was done before the sync was"
echo "ok   $(grep 'resync complete' "$PRIMARY_LOG")"
bg_wait "$fio_pid" || fail "fio exited with $?: $(tail -30 "$T/fio.out")"
grep -q 'err= *0' "$T/fio.out" || fail "fio: $(tail -30 "$T/fio.out")"
grep -q 'READ: bw=' "$T/fio.out" || fail "fio did not verify: $(cat "$T/fio.out")"
bg_wait "$burst_pid" || fail "fio burst exited with $?: $(tail -30 "$T/burst.out")"
grep -q 'err= *0' "$T/burst.out" || fail "fio burst: $(tail -30 "$T/burst.out")"
echo "ok   fio during the sync: done, verified, no error; the burst too"

n=$(sed -n 's/.*resync complete: .* \([0-9]*\) bytes of data.*/\1/p' "$PRIMARY_LOG")
[ -n "$n" ] || fail "no byte count in the sync line"
[ "$n" -ge $((32 * MIB)) ] ||
    fail "the sync sent $n bytes of data, less than the 32 MiB written before it"
[ "$n" -le $((48 * MIB)) ] ||
    fail "the sync sent $n bytes of data, more than the 48 MiB ever written (holes copied?)"

stop_primary || fail "duet-primary exited with $?"
stop_mirror || fail "duet-mirror exited with $?"
same_images
cmp -n $((32 * MIB)) "$T/src.raw" "$T/mirror.img" ||
    fail "the mirror's first 32 MiB are not the image qemu-img wrote"
cmp -s -i $((48 * MIB)) -n $((16 * MIB)) "$T/mirror.img" /dev/zero ||
    fail "the mirror has data in 48M..64M, where nothing was written"
echo "PASS: $TNAME"
