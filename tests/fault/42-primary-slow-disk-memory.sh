#!/bin/sh
# 42-primary-slow-disk-memory: with no mirror, a slow disk (nbdkit's delay
# filter, 2 ms a write, behind nbdfuse) and a client that keeps 16 4 MiB
# WRITEs in flight (fio), duet-primary holds at most about
# primary.max_inflight_bytes (8M here) of their data: reading requests
# pauses above it. Its peak RSS grows by well under the 64 MiB the client
# has in flight, and every write lands (fio verifies them).
. "$(dirname "$0")/lib.sh"
need fio
need_fuse file

fault_setup sync 64M
truncate -s 64M "$T/backing.img"
fuse_disk primary file "$T/backing.img" --filter=delay delay-write=2ms
sed -i 's|^  mode = "sync";$|&\n  max_inflight_bytes = "8M";|' "$T/primary.conf"
grep -q 'max_inflight_bytes = "8M"' "$T/primary.conf" ||
    fail "cannot set primary.max_inflight_bytes in $T/primary.conf"

hwm() {
	awk '$1 == "VmHWM:" { print $2 }' "/proc/$PRIMARY_PID/status"
}
# Under AddressSanitizer (make check SAN=1) freed memory waits in a
# quarantine, which would count in the RSS: none here.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0"
export ASAN_OPTIONS
start_primary	# no mirror: nothing but the disk bounds the writes
before=$(hwm)
[ -n "$before" ] || fail "no VmHWM in /proc/$PRIMARY_PID/status"
timeout 120 fio --name=big --ioengine=nbd --uri="$NBD_URI" --rw=write \
    --bs=4M --iodepth=16 --size=64M --verify=crc32c --do_verify=1 \
    --verify_state_save=0 --output="$T/fio.out" >/dev/null 2>&1 ||
    fail "fio exited with $?: $(tail -20 "$T/fio.out")"
grep -q 'err= *0' "$T/fio.out" || fail "fio: $(tail -20 "$T/fio.out")"
after=$(hwm)
grown=$(( (after - before) / 1024 ))
echo "ok   fio wrote and verified 64 MiB in 4 MiB writes, 16 in flight;" \
    "peak RSS $((before / 1024)) -> $((after / 1024)) MiB"
# 8M of WRITE data, plus one 4 MiB WRITE over it, plus the input buffer
# (two 4 MiB WRITEs) and the read-back of the verify.
[ "$grown" -lt 40 ] ||
    fail "peak RSS grew by $grown MiB with primary.max_inflight_bytes at 8M"
echo "ok   it grew by $grown MiB, under 40"
stop_primary || fail "duet-primary exited with $?"
echo "PASS: $TNAME"
