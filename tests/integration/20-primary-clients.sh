#!/bin/sh
# duet-primary driven by real NBD clients, in each mode: nbdinfo sees the
# size, flags and block sizes; qemu-img convert, qemu-io patterns, fio with
# verify, nbdcopy in and out all read back what they wrote; trims and
# write-zeroes read back as zeros; after a clean stop the mirror's volume
# equals the primary's byte for byte.
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"
need nbdinfo
need nbdcopy
need qemu-io
need qemu-img
need fio

SIZE=64M
mk_certs
head -c 8M /dev/urandom >"$T/src.raw"
head -c 2M /dev/urandom >"$T/in.raw"

# region_is FILE OFF LEN REF [REFOFF]: bytes OFF..OFF+LEN of FILE equal REF's.
region_is() {
	cmp -n "$3" -i "$2:${5:-0}" "$1" "$4" >/dev/null
}

for mode in sync memsync async; do
	echo "--- mode $mode"
	rm -f "$T"/primary.img "$T"/primary.meta "$T"/mirror.img "$T"/mirror.meta
	write_conf "$T/mirror.conf"
	write_primary_conf "$T/primary.conf" "$mode"
	start_mirror
	start_primary
	wait_synced 1

	info=$(nbdinfo --json "$NBD_URI") || fail "nbdinfo failed"
	for kv in '"export-size": 67108864' '"can_flush": true' \
	    '"can_fua": true' '"can_trim": true' '"can_zero": true' \
	    '"can_multi_conn": true' '"is_read_only": false'; do
		echo "$info" | grep -q "$kv" || fail "$mode: nbdinfo lacks $kv:
$info"
	done
	nbdinfo "$NBD_URI" | grep -Eq 'block_size_minimum: 512' ||
	    fail "$mode: minimum block size is not 512"
	nbdinfo --list "nbd+unix:///?socket=$NBD_SOCK" | grep -q 'vol0' ||
	    fail "$mode: LIST does not show vol0"

	# 0..8M: qemu-img convert of a random image.
	qemu-img convert -n -f raw -O raw "$T/src.raw" "$NBD_URI" ||
	    fail "$mode: qemu-img convert failed"

	# 16M..: qemu-io patterns, write-zeroes, discard.
	qemu-io -f raw "$NBD_URI" \
	    -c 'write -P 0xab 16M 1M' -c 'read -P 0xab 16M 1M' \
	    -c 'write -P 0x5c 20M 1M' -c 'write -z 20M 512k' \
	    -c 'read -P 0 20M 512k' -c 'read -P 0x5c 20992k 512k' \
	    -c 'write -P 0x77 24M 1M' -c 'discard 24M 1M' \
	    -c 'read -P 0 24M 1M' -c 'write -f -P 0x3d 25M 64k' \
	    -c 'flush' >"$T/qemu-io.out" 2>&1 ||
	    fail "$mode: qemu-io failed: $(cat "$T/qemu-io.out")"
	grep -qi 'pattern verification failed\|error' "$T/qemu-io.out" &&
	    fail "$mode: qemu-io: $(cat "$T/qemu-io.out")"

	# 32M..64M: fio random and sequential writes, verified.
	fio --name=rand --ioengine=nbd --uri="$NBD_URI" --rw=randwrite \
	    --bs=4k --iodepth=32 --offset=32M --size=16M --verify=crc32c \
	    --do_verify=1 --verify_state_save=0 --randrepeat=1 >"$T/fio1.out" 2>&1 ||
	    fail "$mode: fio randwrite+verify: $(tail -20 "$T/fio1.out")"
	fio --name=seq --ioengine=nbd --uri="$NBD_URI" --rw=write \
	    --bs=64k --iodepth=8 --offset=48M --size=16M --verify=crc32c \
	    --do_verify=1 --verify_state_save=0 >"$T/fio2.out" 2>&1 ||
	    fail "$mode: fio write+verify: $(tail -20 "$T/fio2.out")"

	# nbdcopy out (the whole volume), then in (with in.raw at 28M).
	nbdcopy "$NBD_URI" "$T/out.raw" || fail "$mode: nbdcopy out failed"
	region_is "$T/out.raw" 0 8388608 "$T/src.raw" ||
	    fail "$mode: 0..8M differs from the image qemu-img wrote"
	dd if="$T/out.raw" of="$T/out.mod" bs=1M count=64 2>/dev/null
	dd if="$T/in.raw" of="$T/out.mod" bs=1M seek=28 conv=notrunc 2>/dev/null
	nbdcopy "$T/out.mod" "$NBD_URI" || fail "$mode: nbdcopy in failed"
	nbdcopy "$NBD_URI" "$T/out2.raw" || fail "$mode: nbdcopy out failed"
	cmp "$T/out.mod" "$T/out2.raw" || fail "$mode: nbdcopy round trip differs"

	stop_primary || fail "$mode: duet-primary exited with $?"
	stop_mirror || fail "$mode: duet-mirror exited with $?"
	same_images "$mode"
	cmp "$T/out2.raw" "$T/mirror.img" ||
	    fail "$mode: the mirror differs from what the clients read"
	region_is "$T/mirror.img" 20971520 524288 /dev/zero ||
	    fail "$mode: write-zeroes did not zero the mirror"
	region_is "$T/mirror.img" 25165824 1048576 /dev/zero ||
	    fail "$mode: trim did not zero the mirror"
done
echo "PASS"
