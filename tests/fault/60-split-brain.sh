#!/bin/sh
# 60-split-brain: both sides wrote as primary; nothing is copied until an
# operator names the side to discard, then only what either side changed.
#
# Two hosts on loopback: A is the usual primary ($T/primary.img, .meta),
# B the usual mirror ($T/mirror.img, .meta).
#
#  1. A primary, B mirror, in sync (a 4 MiB baseline written); both
#     stopped cleanly.
#  2. A alone (mirror down) writes 0xaa at 1M+256K and 20M+64K (5 extents).
#  3. B is promoted: duet-primary on B's volume and metadata (its own NBD
#     and status sockets, a mirror address nobody listens on) logs
#     "promoted"; writes 0xbb at 8M+128K and 30M+4K (3 extents); stops.
#  4. B as mirror, A as primary: both status sockets say "split-brain",
#     both logs say SPLIT BRAIN; B's image does not change (sha256 before
#     and after, over several of the primary's retries), while A keeps
#     serving: it writes 0xcc at 40M+64K (1 extent).
#  5. resolve --discard-local on A (the primary) exits non-zero, saying it
#     is the primary; A stops; on B the resolve succeeds. B restarts: the
#     choice is in its metadata, so it still shows discard_local and logs
#     that it is armed.
#  6. A starts again, connects and resyncs: counters.resync_extents >= the
#     9 extents written and far below the volume's 1024; in sync; neither
#     log says "full resync".
#  7. Clean stops: B equals A byte for byte (B's 0xbb writes are gone).
#  8. B as mirror arms the resolve with no split brain, then is promoted:
#     duet-primary logs that it drops the armed resolve, and B as a mirror
#     again shows discard_local false.
. "$(dirname "$0")/lib.sh"
need qemu-io
need sha256sum

CTL=$DUET_BUILD/duetctl
SIZE=64M
NEXT=1024		# extents in the volume

fault_setup sync "$SIZE"
cd "$T" || fail "cd $T"

A_NBD=$NBD_SOCK
A_STATUS=$PRIMARY_STATUS
A_LOG=$PRIMARY_LOG
B_NBD=$T/b-nbd.sock
B_STATUS=$T/b-primary.status
B_LOG=$T/b-primary.log
: >"$B_LOG"

# B's volume as a primary, replicating to a port nobody listens on.
host_conf "$T/b-primary.conf" primary b "$(free_port)" "$B_STATUS" "$B_NBD" sync

# as_a / as_b: which primary start_primary, pstat, qemu-io address.
as_a() {
	NBD_SOCK=$A_NBD PRIMARY_STATUS=$A_STATUS PRIMARY_LOG=$A_LOG
	NBD_URI="nbd+unix:///vol0?socket=$NBD_SOCK"
}
as_b() {
	NBD_SOCK=$B_NBD PRIMARY_STATUS=$B_STATUS PRIMARY_LOG=$B_LOG
	NBD_URI="nbd+unix:///vol0?socket=$NBD_SOCK"
}


# ctl_fails SOCK RE ARGS...: duetctl exits non-zero with a message
# matching RE.
ctl_fails() {
	_sock=$1 _re=$2
	shift 2
	if "$CTL" -s "$_sock" "$@" >"$T/ctl.out" 2>"$T/ctl.err"; then
		fail "duetctl $*: exit 0, want an error: $(cat "$T/ctl.out")"
	fi
	grep -Eqi -e "$_re" "$T/ctl.err" ||
	    fail "duetctl $*: message '$(cat "$T/ctl.err")' does not match /$_re/"
	echo "ok   duetctl $* on the primary: refused: $(cat "$T/ctl.err")"
}

img_sum() {
	sha256sum "$1" | cut -d' ' -f1
}

# 1. In sync, then both stopped.
as_a
start_mirror
start_primary
qio 'write -P 0x11 0 4M'
wait_in_sync 30
stop_primary || fail "A: duet-primary exited with $?"
stop_mirror || fail "B: duet-mirror exited with $?"
same_images "after the first sync"
g0=$(img_sum "$T/primary.img")
echo "ok   A and B in sync, stopped"

# 2. A writes alone.
start_primary
qio 'write -P 0xaa 1M 256K' 'write -P 0xaa 20M 64K'
stop_primary || fail "A alone: duet-primary exited with $?"

# 3. B promoted, writes.
as_b
start_primary "$T/b-primary.conf"
grep -q 'promoted' "$B_LOG" || fail "B: no 'promoted' in its log"
qio 'write -P 0xbb 8M 128K' 'write -P 0xbb 30M 4K'
stop_primary || fail "B as primary: duet-primary exited with $?"
echo "ok   B promoted: $(grep -o 'promoted.*' "$B_LOG")"
b0=$(img_sum "$T/mirror.img")
[ "$b0" != "$g0" ] || fail "B's writes did not reach its image"

# 4. Split brain.
as_a
al4=$(wc -l <"$A_LOG")
start_mirror
start_primary
wait_status "$MIRROR_STATUS" 's["connection"]["state"] == "split-brain"' 20
wait_status "$PRIMARY_STATUS" 's["connection"]["state"] == "split-brain"' 20
grep -q 'SPLIT BRAIN' "$A_LOG" || fail "A's log does not name the split brain"
grep -q 'SPLIT BRAIN' "$MIRROR_LOG" || fail "B's log does not name the split brain"
echo "ok   split brain: $(grep -o 'SPLIT BRAIN.*' "$MIRROR_LOG" | head -1)"
qio 'write -P 0xcc 40M 64K'
# A few retries of the primary (backoff 1, 2, 4 s).
sleep 4
[ "$(mstat 's["connection"]["state"]')" = split-brain ] ||
    fail "B: state $(mstat 's["connection"]["state"]') before the resolve"
[ "$(pstat 's["connection"]["state"]')" = split-brain ] ||
    fail "A: state $(pstat 's["connection"]["state"]') before the resolve"
[ "$(img_sum "$T/mirror.img")" = "$b0" ] ||
    fail "B's image changed during the split brain"
tail -n +$((al4 + 1)) "$A_LOG" | grep -q 'resync: copying' && fail "A began copying during the split brain"
echo "ok   B's image unchanged over $(grep -c 'hello refused' "$MIRROR_LOG") refused hellos"

# 5. Resolve: not on the primary; on B, with A stopped; B restarted.
ctl_fails "$PRIMARY_STATUS" 'primary' resolve --discard-local
stop_primary || fail "A in the split brain: duet-primary exited with $?"
"$CTL" -s "$MIRROR_STATUS" resolve --discard-local >"$T/resolve.out" 2>&1 ||
    fail "resolve --discard-local on B: $(cat "$T/resolve.out")"
echo "ok   resolve on B: $(cat "$T/resolve.out")"
stop_mirror || fail "B after the resolve: duet-mirror exited with $?"
ml=$(wc -l <"$MIRROR_LOG")
start_mirror
[ "$(mstat 's["discard_local"]')" = True ] ||
    fail "B forgot the resolve across a restart"
tail -n +$((ml + 1)) "$MIRROR_LOG" | grep -q 'discard-local is armed' ||
    fail "B's log does not say the resolve is armed after the restart"
echo "ok   B restarted, the resolve kept: $(grep -o 'resolve --discard-local is armed.*' "$MIRROR_LOG")"

# 6. A's next connection resyncs the union.
al=$(wc -l <"$A_LOG")
start_primary
t0=$(date +%s)
wait_in_sync 45
r=$(pstat 's["counters"]["resync_extents"]')
echo "ok   in sync $(($(date +%s) - t0)) s after the resolve; resync_extents $r"
[ "$r" -ge 9 ] || fail "resync_extents $r, want >= 9 (A's 5 + B's 3 + 1 during the split)"
[ "$r" -le $((NEXT / 8)) ] ||
    fail "resync_extents $r of $NEXT: not a resync of the changed extents"
{ tail -n +$((al + 1)) "$A_LOG"; tail -n +$((ml + 1)) "$MIRROR_LOG"; } \
    >"$T/after-resolve.log"
grep 'full resync' "$T/after-resolve.log" &&
    fail "a full resync after the resolve"
grep -q 'split brain resolved' "$T/after-resolve.log" ||
    fail "B's log does not say the split brain was resolved"
grep -E 'connected \(mode|split brain resolved|resync complete' "$T/after-resolve.log"

# 7. B equals A.
stop_primary || fail "A: duet-primary exited with $?"
stop_mirror || fail "B: duet-mirror exited with $?"
same_images "after the resolve"
dd if="$T/mirror.img" bs=64k skip=128 count=2 2>/dev/null | od -An -tx1 |
    grep -q bb && fail "B's 0xbb writes are still there"
echo "ok   B equals A; B's writes are gone"

# 8. Armed without a split brain, then B promoted: the primary drops it.
start_mirror
"$CTL" -s "$MIRROR_STATUS" resolve --discard-local >"$T/arm.out" 2>&1 ||
    fail "resolve --discard-local on B alone: $(cat "$T/arm.out")"
grep -q '"split_brain":false' "$T/arm.out" ||
    fail "B alone: the resolve reply does not say no split brain: $(cat "$T/arm.out")"
stop_mirror || fail "B armed: duet-mirror exited with $?"
as_b
bl=$(wc -l <"$B_LOG")
start_primary "$T/b-primary.conf"
stop_primary || fail "B promoted again: duet-primary exited with $?"
tail -n +$((bl + 1)) "$B_LOG" | grep -q 'discard-local` is dropped' ||
    fail "B promoted: its log does not say the armed resolve is dropped"
start_mirror
[ "$(mstat 's["discard_local"]')" = False ] ||
    fail "B as mirror again: the resolve armed before its promotion is still armed"
stop_mirror || fail "B: duet-mirror exited with $?"
echo "ok   an armed resolve does not survive a promotion"
echo "PASS: $TNAME"
