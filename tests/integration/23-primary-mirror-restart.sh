#!/bin/sh
# 23-primary-mirror-restart: in sync mode, the mirror goes away while a
# client writes, and comes back; the client never notices.
#
#  1. SIGKILL to the mirror in the middle of a fio randwrite --verify run;
#     fio sees no error and keeps going (the primary goes on alone and
#     says so); the mirror is started again, the primary reconnects
#     (backoff 1, 2, 4 ... s) and runs a full sync while fio still writes;
#     fio ends with exit 0 and its verify passes.
#  2. The same with SIGTERM (a clean mirror stop: exit 0, GOODBYE).
#
# Then, after a clean stop of both, the mirror's volume equals the
# primary's byte for byte.
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"
need fio

SIZE=64M
mk_certs
cd "$T" || fail "cd $T"
write_conf "$T/mirror.conf"
write_primary_conf "$T/primary.conf" sync
start_mirror
start_primary
wait_synced 1

# count RE: lines of the primary log matching RE.
count() {
	grep -cE "$1" "$PRIMARY_LOG"
}

# wait_count RE N SECS: until the primary log has N lines matching RE.
wait_count() {
	_n=0
	while [ "$(count "$1")" -lt "$2" ]; do
		_n=$((_n + 1))
		[ $_n -le $(($3 * 10)) ] || return 1
		sleep 0.1
	done
}

# phase NAME SYNCS OFFSET: fio on OFFSET..+12M at 200 writes/s (about 15 s
# of writing, then the verify); the mirror goes away after 3 s by
# $how, is started again 3 s later; SYNCS is the "sync complete" count
# expected after the reconnect.
phase() {
	_name=$1 _syncs=$2 _off=$3
	_conns=$(count 'connected \(mode')
	bg timeout -k 5 80 fio --name="$_name" --ioengine=nbd --uri="$NBD_URI" \
	    --rw=randwrite --bs=4k --iodepth=8 --offset="$_off" --size=12M \
	    --rate_iops=200 --verify=crc32c --do_verify=1 \
	    --randseed="$_syncs" --verify_state_save=0 \
	    --output="$T/fio.$_name.out"
	_fio=$LAST_PID
	sleep 3
	_alive "$_fio" || fail "$_name: fio ended early: $(cat "$T/fio.$_name.out")"
	_lost=$(count 'lost: ')
	case $how in
	KILL) crash_mirror ;;
	TERM) stop_mirror || fail "$_name: duet-mirror exited with $? on SIGTERM" ;;
	esac
	wait_count 'lost: ' $((_lost + 1)) 5 ||
	    fail "$_name: the primary did not notice the mirror's end"
	echo "ok   $_name: $(grep 'lost: ' "$PRIMARY_LOG" | tail -1)"
	sleep 3
	_alive "$_fio" ||
	    fail "$_name: fio ended while the mirror was away: $(cat "$T/fio.$_name.out")"
	start_mirror
	# Backoff 1, 2, 4 s: a retry within about 5 s of the mirror's return.
	wait_count 'connected \(mode' $((_conns + 1)) 8 ||
	    fail "$_name: no reconnect within 8 s of the mirror's return"
	wait_synced "$_syncs"
	_alive "$_fio" ||
	    fail "$_name: fio was done before the sync was (the test is too slow to show anything)"
	echo "ok   $_name: reconnected and synced while fio wrote"
	bg_wait "$_fio" ||
	    fail "$_name: fio exited with $?: $(tail -30 "$T/fio.$_name.out")"
	grep -q 'err= *0' "$T/fio.$_name.out" ||
	    fail "$_name: fio: $(tail -30 "$T/fio.$_name.out")"
	grep -q 'READ: bw=' "$T/fio.$_name.out" ||
	    fail "$_name: fio did not verify: $(cat "$T/fio.$_name.out")"
	echo "ok   $_name: fio done, verified, no error"
}

how=KILL phase kill 2 0
how=TERM phase term 3 16M
grep -Eq 'window full|not applied within' "$PRIMARY_LOG" &&
    fail "the mirror was dropped as congested: $(grep -E 'window full|not applied within' "$PRIMARY_LOG")"

stop_primary || fail "duet-primary exited with $?"
stop_mirror || fail "duet-mirror exited with $?"
same_images
echo "PASS: $TNAME"
