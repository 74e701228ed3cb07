#!/bin/sh
# 70-failover: A crashes under load, B takes over as primary, A comes back
# as B's mirror with a resync of the changed extents only; then failback.
#
# Two hosts on loopback. A: $T/primary.img/.meta, certificate "primary";
# B: $T/mirror.img/.meta, certificate "mirror". Each host keeps its
# certificate whatever its role (tests/certs.sh makes every certificate
# good for both TLS client and server), so each side's peer_name is the
# other host's name:
#   A primary  -> proxy -> B mirror    (primary.conf, mirror.conf)
#   B primary  ->          A mirror    (b-primary.conf, a-mirror.conf)
#
#  1. A primary, B mirror, in sync (sync mode, 256 MiB).
#  2. fio writes 0..16M and qemu-io writes numbered 4 KiB stamps from 64M
#     on; A gets SIGKILL while both run. Every stamp A acknowledged is in
#     B's image.
#  3. B's mirror stops cleanly; duet-primary on B's volume says
#     "promoted" and serves; fio writes 128M..132M on B, qemu-io 0xbb at
#     200M+256K.
#  4. duet-mirror on A's volume: B connects, no "full resync" in either
#     log, counters.resync_extents >= B's 4 extents at 200M and <= the
#     extents of the 4 MiB activity-log regions written (0..16M, the
#     stamps' 64M..72M, 128M..132M, 200M..204M: 512 of 4096); in sync.
#     Clean stops: A equals B byte for byte; A has B's 0xbb writes and
#     every stamp it had acknowledged before the crash.
#  5. Failback: A primary ("promoted"), B mirror: a small resync (at most
#     16 extents), no full resync; a write on A reaches B; clean stops:
#     equal.
. "$(dirname "$0")/lib.sh"
need fio
need qemu-io
need timeout

SIZE=256M
NEXT=4096		# extents
STAMP_OFF=$((64 << 20))
NSTAMPS=2048		# 8 MiB of stamps at most

fault_setup sync "$SIZE"
cd "$T" || fail "cd $T"

B_PORT=$PORT
A_PORT=$(free_port)
A_NBD=$NBD_SOCK A_STATUS=$PRIMARY_STATUS A_LOG=$PRIMARY_LOG
B_NBD=$T/b-nbd.sock B_STATUS=$T/b-primary.status B_LOG=$T/b-primary.log
BM_STATUS=$MIRROR_STATUS BM_LOG=$MIRROR_LOG
AM_STATUS=$T/a-mirror.status AM_LOG=$T/a-mirror.log
: >"$B_LOG"
: >"$AM_LOG"

# A as a mirror (A's volume and certificate, listening on A_PORT), and B
# as a primary replicating to it.
host_conf "$T/a-mirror.conf" mirror a "$A_PORT" "$AM_STATUS"
host_conf "$T/b-primary.conf" primary b "$A_PORT" "$B_STATUS" "$B_NBD" sync

# Which daemons lib.sh's start_/stop_primary, start_/stop_mirror, pstat,
# mstat and qemu-io mean: A primary + B mirror, or B primary + A mirror.
a_primary() {
	NBD_SOCK=$A_NBD PRIMARY_STATUS=$A_STATUS PRIMARY_LOG=$A_LOG
	NBD_URI="nbd+unix:///vol0?socket=$NBD_SOCK"
	PORT=$B_PORT MIRROR_STATUS=$BM_STATUS MIRROR_LOG=$BM_LOG
}
b_primary() {
	NBD_SOCK=$B_NBD PRIMARY_STATUS=$B_STATUS PRIMARY_LOG=$B_LOG
	NBD_URI="nbd+unix:///vol0?socket=$NBD_SOCK"
	PORT=$A_PORT MIRROR_STATUS=$AM_STATUS MIRROR_LOG=$AM_LOG
}


# no_full_resync FILE FROM: no "full resync" in FILE after line FROM.
no_full_resync() {
	tail -n +$(($2 + 1)) "$1" | grep 'full resync' &&
	    fail "$1: a full resync"
	return 0
}

lines() {
	wc -l <"$1"
}

# 1. In sync.
a_primary
start_mirror
start_primary
wait_in_sync 30
echo "ok   A primary, B mirror, in sync"

# 2. A crashes under load.
fio_load a 0 16M 30 --norandommap --randseed=70
FIO=$FIO_PID
sleep 2
stamp_writes $NSTAMPS $STAMP_OFF &
STAMPS=$!
_n=0
until [ "$(grep -c "^wrote" "$T/stamps.out" 2>/dev/null || :)" -ge 200 ] 2>/dev/null; do
	_n=$((_n + 1))
	[ $_n -le 100 ] || fail "stamps: $(tail -5 "$T/stamps.out")"
	sleep 0.1
done
_alive "$FIO" || fail "fio ended before the crash: $(tail -20 "$T/fio-a.out")"
crash_primary
# A killed daemon leaves its socket, which start_primary would take for
# the next one's.
rm -f "$A_NBD"
wait "$STAMPS"
bg_wait "$FIO"
acked=$(grep -c '^wrote' "$T/stamps.out")
[ "$acked" -lt "$NSTAMPS" ] || fail "all $NSTAMPS stamps were done before the crash"
echo "ok   A killed after $acked of $NSTAMPS stamps"
stop_mirror || fail "B: duet-mirror exited with $?"
check_stamps "$T/mirror.img" $STAMP_OFF

# 3. B takes over.
b_primary
start_primary "$T/b-primary.conf"
grep -q 'promoted' "$B_LOG" || fail "B: no 'promoted' in its log"
echo "ok   B: $(grep -o 'promoted.*' "$B_LOG")"
fio --name=b --ioengine=nbd --uri="$NBD_URI" --rw=randwrite --bs=4k \
    --iodepth=8 --offset=128M --size=4M --io_size=8M --randseed=71 \
    --output="$T/fio-b.out" >/dev/null 2>&1 ||
    fail "fio on B: $(tail -20 "$T/fio-b.out")"
qio 'write -P 0xbb 200M 256K'

# 4. A as B's mirror.
bl=$(lines "$B_LOG")
start_mirror "$T/a-mirror.conf"
grep 'this volume was a primary' "$AM_LOG"
wait_in_sync 45
grep -E 'connected \(mode|resync complete' "$B_LOG" | tail -2
no_full_resync "$B_LOG" "$bl"
no_full_resync "$AM_LOG" 0
r=$(pstat 's["counters"]["resync_extents"]')
[ "$r" -ge 4 ] || fail "failover: resync_extents $r, want >= 4 (B's 0xbb writes)"
[ "$r" -le 512 ] ||
    fail "failover: resync_extents $r, want <= 512 (the AL regions written)"
echo "ok   failover resync: $r of $NEXT extents"
qio 'write -P 0xbc 210M 64K'
stop_primary || fail "B as primary: duet-primary exited with $?"
stop_mirror || fail "A as mirror: duet-mirror exited with $?"
same_images "after the failover"
check_stamps "$T/primary.img" $STAMP_OFF
# B's 0xbb writes reached A.
head -c $((256 << 10)) /dev/zero | tr '\0' '\273' >"$T/bb"
cmp -s -i $((200 << 20)):0 -n $((256 << 10)) "$T/primary.img" "$T/bb" ||
    fail "A lacks B's 0xbb writes at 200M"
echo "ok   A equals B after the failover (B's writes and A's acknowledged stamps on both)"

# 5. Failback.
a_primary
al=$(lines "$A_LOG") ml=$(lines "$BM_LOG")
start_mirror
start_primary
tail -n +$((al + 1)) "$A_LOG" | grep -q promoted || fail "A: not promoted"
wait_in_sync 45
grep -E 'connected \(mode|resync complete' "$A_LOG" | tail -2
no_full_resync "$A_LOG" "$al"
no_full_resync "$BM_LOG" "$ml"
r=$(pstat 's["counters"]["resync_extents"]')
[ "$r" -le 16 ] || fail "failback: resync_extents $r, want <= 16"
echo "ok   failback resync: $r extents"
qio 'write -P 0xac 220M 64K'
wait_in_sync 30
stop_primary || fail "A: duet-primary exited with $?"
stop_mirror || fail "B: duet-mirror exited with $?"
same_images "after the failback"
echo "ok   A equals B after the failback"
