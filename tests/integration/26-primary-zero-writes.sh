#!/bin/sh
# 26-primary-zero-writes: a WRITE whose payload is all zeros travels to the
# mirror as a 48-byte WRITE_ZEROES (counters.writes_sent_as_zeroes counts
# them), a WRITE with one non-zero byte as data, and the mirror ends up
# byte for byte equal either way, zeros over old data included.
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"
need qemu-io
need python3

SIZE=64M
mk_certs
write_conf "$T/mirror.conf"
write_primary_conf "$T/primary.conf" sync
start_mirror
start_primary
wait_synced 1

zeroes() {
	"$DUET_BUILD/duetctl" -s "$PRIMARY_STATUS" status --json |
	    python3 -c 'import json, sys
print(json.load(sys.stdin)["counters"]["writes_sent_as_zeroes"])'
}
n0=$(zeroes)
[ "$n0" -eq 0 ] || fail "writes_sent_as_zeroes is $n0 before any write"
# Data first, then zeros over part of it (a plain WRITE of zero bytes,
# not qemu-io's -z), then a zero buffer with one byte set.
qemu-io -f raw -c "write -P 0x77 0 2M" -c "write -P 0 512k 1M" \
    -c "write -P 0 4M 64k" -c "write -P 0 8M 4k" -c "write -P 1 8M 1" \
    "$NBD_URI" >"$T/qio.out" 2>&1 || fail "qemu-io: $(cat "$T/qio.out")"
n1=$(zeroes)
[ "$n1" -eq 3 ] || fail "writes_sent_as_zeroes is $n1 after three zero writes, want 3"
echo "ok   3 zero WRITEs sent as WRITE_ZEROES; the others as data"

stop_primary || fail "duet-primary exited with $?"
stop_mirror || fail "duet-mirror exited with $?"
same_images
python3 - "$T/mirror.img" <<'PY' || fail "the mirror's bytes are not what was written"
import sys
f = open(sys.argv[1], "rb")
d = f.read(9 << 20)
assert d[:512 << 10] == b"\x77" * (512 << 10)
assert d[512 << 10:1536 << 10] == bytes(1 << 20)
assert d[1536 << 10:2 << 20] == b"\x77" * (512 << 10)
assert d[8 << 20] == 1 and d[(8 << 20) + 1:(8 << 20) + 4096] == bytes(4095)
PY
echo "ok   the mirror equals the primary: zeros over data, data after zeros"
echo "PASS: $TNAME"
