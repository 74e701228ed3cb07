#!/bin/sh
# 50-verify: online verify finds a block corrupted behind duet's back on
# the mirror, and only that, while a client writes; resync repairs it.
#
#  1. Errors: verify with bad arguments (unknown option, missing or bad
#     offset, start >= stop, stop past the end) exits non-zero naming the
#     problem; verify while the mirror is down exits non-zero saying it is
#     not connected; verify on the mirror's socket is refused (wrong role).
#  2. Primary and mirror in sync (sync mode, 128 MiB); fio writes 4 KiB
#     random blocks over 0..16M the whole time from here to step 6.
#  3. 4 KiB of random bytes are written into the mirror's image file at
#     96M+8K (dd conv=notrunc while duet-mirror runs: the page cache is
#     shared, so its reads see them): one extent (1536) differs.
#  4. verify --start 0 --stop 64M (excludes the block): 0 mismatches,
#     1024 extents checked; then 5 verifies of fio's 0..16M: 0 each. The
#     extents fio writes give no false positive.
#  5. verify of the whole volume, twice: exactly 1 mismatch each time
#     (extent 1536, logged), 2048 extents checked; out_of_sync_extents >= 1.
#  6. duetctl resync copies it (counters.resync_extents grows by >= 1 and
#     by few); the mirror logs that it is inconsistent for the pass, and
#     is up to date after it; in sync again; a whole-volume verify finds 0.
#  7. fio stops; after clean stops of both, the images are equal.
. "$(dirname "$0")/lib.sh"
need fio
need qemu-io
need dd
need timeout

CTL=$DUET_BUILD/duetctl
SIZE=128M
BAD_OFF=$((96 * 1048576 + 8192))	# inside extent 1536
BAD_EXT=$((BAD_OFF / EXT))

fault_setup sync "$SIZE"
cd "$T" || fail "cd $T"

# ctl_fails SOCK RE ARGS...: duetctl -s SOCK ARGS exits non-zero and
# says something matching RE (case-insensitive) on stderr.
ctl_fails() {
	_sock=$1 _re=$2
	shift 2
	if "$CTL" -s "$_sock" "$@" >"$T/ctl.out" 2>"$T/ctl.err"; then
		fail "duetctl $*: exit 0, want an error: $(cat "$T/ctl.out")"
	fi
	grep -Eqi -e "$_re" "$T/ctl.err" ||
	    fail "duetctl $*: message '$(cat "$T/ctl.err")' does not match /$_re/"
	echo "ok   duetctl $*: refused: $(cat "$T/ctl.err")"
}

# verify_run [ARGS]: a verify on the primary, waited for; prints
# "MISMATCHED CHECKED".
verify_run() {
	"$CTL" -s "$PRIMARY_STATUS" verify "$@" >"$T/verify.out" 2>&1 ||
	    fail "duetctl verify $*: $(cat "$T/verify.out")"
	wait_status "$PRIMARY_STATUS" 's["verify"]["done"] and
	    not s["verify"]["running"]' 60
	pstat '"%d %d" % (s["verify"]["mismatched_extents"],
	    s["verify"]["checked_extents"])'
}

# 1. Errors, with the mirror not there yet.
start_primary
ctl_fails "$PRIMARY_STATUS" 'unknown argument.*--bogus' verify --bogus 1M
ctl_fails "$PRIMARY_STATUS" '--start needs a byte offset' verify --start
ctl_fails "$PRIMARY_STATUS" '--stop needs a byte offset' verify --stop lots
ctl_fails "$PRIMARY_STATUS" 'start < stop' verify --start 64M --stop 32M
ctl_fails "$PRIMARY_STATUS" 'start < stop' verify --stop 1G
ctl_fails "$PRIMARY_STATUS" 'not connected' verify
ctl_fails "$PRIMARY_STATUS" 'not connected' resync
[ "$(pstat 's["verify"]["running"]')" = False ] ||
    fail "a refused verify is running"

# 2. In sync, with data in the region that gets corrupted.
start_mirror
wait_in_sync 30
ctl_fails "$MIRROR_STATUS" 'primary' verify
qemu-io -f raw -c 'write -P 0x5a 96M 1M' "$NBD_URI" >"$T/qemu-io.out" 2>&1 ||
    fail "qemu-io: $(cat "$T/qemu-io.out")"
wait_in_sync 30

bg timeout -k 5 80 fio --name=load --ioengine=nbd --uri="$NBD_URI" \
    --rw=randwrite --bs=4k --iodepth=8 --offset=0 --size=16M \
    --norandommap --randseed=50 --time_based --runtime=70 \
    --rate_iops=1000 --output="$T/fio.out"
FIO=$LAST_PID
sleep 2
_alive "$FIO" || fail "fio ended early: $(cat "$T/fio.out")"
w0=$(pstat 's["counters"]["writes"]')

# 3. Corruption behind duet's back.
dd if=/dev/urandom of="$T/mirror.img" bs=4096 seek=$((BAD_OFF / 4096)) \
    count=1 conv=notrunc 2>"$T/dd.err" || fail "dd: $(cat "$T/dd.err")"
cmp -s "$T/primary.img" "$T/mirror.img" &&
    fail "the corruption did not make the images differ"

# 4. A range without the block.
set -- $(verify_run --start 0 --stop 64M)
[ "$1" -eq 0 ] || fail "verify 0..64M: $1 mismatches, want 0 (fio's extents?)"
[ "$2" -eq 1024 ] || fail "verify 0..64M: $2 extents checked, want 1024"
echo "ok   verify 0..64M under load: 0 of $2 extents differ"
# fio's region alone, again and again: each verify's checksums race its
# writes.
for run in 1 2 3 4 5; do
	set -- $(verify_run --start 0 --stop 16M)
	[ "$1" -eq 0 ] && [ "$2" -eq 256 ] ||
	    fail "verify 0..16M ($run): $1 of $2 extents differ, want 0 of 256"
done
echo "ok   5 verifies of fio's 0..16M under load: 0 mismatches"

# 5. The whole volume, twice.
for run in 1 2; do
	set -- $(verify_run)
	[ "$1" -eq 1 ] ||
	    fail "whole verify $run: $1 mismatches, want exactly 1 (extent $BAD_EXT)"
	[ "$2" -eq 2048 ] || fail "whole verify $run: $2 extents checked, want 2048"
	echo "ok   whole verify $run under load: $1 of $2 extents differ"
done
[ "$(grep -c "verify: extent $BAD_EXT (bytes $((BAD_EXT * EXT))+$EXT) differs" \
    "$PRIMARY_LOG")" -eq 2 ] ||
    fail "the log does not name extent $BAD_EXT twice"
[ "$(grep -c 'verify: extent .* differs' "$PRIMARY_LOG")" -eq 2 ] ||
    fail "the log names other extents: $(grep 'verify: extent' "$PRIMARY_LOG")"
oos=$(pstat 's["out_of_sync_extents"]')
[ "$oos" -ge 1 ] || fail "out_of_sync_extents $oos after a mismatch"
echo "ok   out_of_sync_extents $oos"
_alive "$FIO" || fail "fio ended before the verifies did"
[ "$(pstat 's["counters"]["writes"]')" -gt "$w0" ] ||
    fail "fio wrote nothing during the verifies"

# 6. Repair.
r0=$(pstat 's["counters"]["resync_extents"]')
"$CTL" -s "$PRIMARY_STATUS" resync >"$T/resync.out" 2>&1 ||
    fail "duetctl resync: $(cat "$T/resync.out")"
wait_in_sync 30
r1=$(pstat 's["counters"]["resync_extents"]')
[ $((r1 - r0)) -ge 1 ] && [ $((r1 - r0)) -le 16 ] ||
    fail "resync copied $((r1 - r0)) extents, want 1..16"
echo "ok   resync copied $((r1 - r0)) extents ($(cat "$T/resync.out"))"
# Its copies are in no activity log: the mirror counted as inconsistent
# (a crash then marks every extent) until the pass was through.
grep -q 'resync copies: the disk is inconsistent until the pass is through' \
    "$MIRROR_LOG" || fail "the mirror did not mark itself inconsistent for the pass"
wait_status "$MIRROR_STATUS" 's["disk"] == "up-to-date"' 10
echo "ok   the mirror was inconsistent for the pass, and is up to date"
set -- $(verify_run)
[ "$1" -eq 0 ] || fail "verify after the resync: $1 mismatches"
echo "ok   verify after the resync under load: 0 of $2 extents differ"
_alive "$FIO" || fail "fio ended before the repair was checked"

# 7. Equal after clean stops.
w1=$(pstat 's["counters"]["writes"]')
kill "$FIO" 2>/dev/null
bg_wait "$FIO"
grep -q 'err= *0' "$T/fio.out" || fail "fio: $(tail -20 "$T/fio.out")"
wait_in_sync 30
stop_primary || fail "duet-primary exited with $?"
stop_mirror || fail "duet-mirror exited with $?"
same_images "after the repair"
echo "ok   images equal (the primary served $((w1 - w0)) writes during the verifies)"
