#!/bin/sh
# 13-mirror-reconnect: the mirror outlives a primary that vanishes, stops
# cleanly on SIGTERM in the middle of a stream, and restarts after a crash.
#
# Each interrupted stream leaves the volume in a state the test cannot know
# (ops in flight may or may not be applied), so each is followed by a run
# with --fill, which writes the whole volume first: its model is then the
# whole truth, and the mirror's volume must equal it. This also checks
# ordering across sessions: an op of the dead session applied after the new
# session's writes would show up as a difference.
#
#  1. primary SIGKILLed mid-stream: the mirror logs the lost connection,
#     frees the session (a new primary gets in within 5 s), volume == model
#  2. SIGTERM to the mirror mid-stream: it says GOODBYE, exits 0 within
#     10 s; after a restart, volume == model
#  3. SIGKILL to the mirror mid-stream: it restarts (metadata intact: the
#     uuid is still enforced), volume == model
. "$(dirname "$0")/lib.sh"

U=feedface000011112222333344445555
U2=0badbadbadbadbadbadbadbadbadbad2

# stream_bg NAME: a long stream in the background ($LAST_PID), returning
# once its hello was accepted and it has been sending for a moment.
stream_bg() {
	bg peer -v --uuid "$U" --seed 77 --ops 100000 --max-len 1M \
	    >"$T/$1.out" 2>&1
	wait_for "$T/$1.out" 'hello accepted' "$LAST_PID" ||
	    fail "$1: no hello accepted: $(show "$T/$1.out")"
	sleep 0.5
	_alive "$LAST_PID" ||
	    fail "$1: the stream ended early: $(show "$T/$1.out")"
}

# fill_run NAME SEED: a --fill run, retried while the mirror still counts
# the previous primary as active (it may not have seen its end yet), for
# at most 5 s; then volume == model.
fill_run() {
	_n=0
	while :; do
		peer --uuid "$U" --fill --seed "$2" --ops 1000 \
		    --image "$T/$1.img" >"$T/$1.out" 2>&1
		_rc=$?
		[ $_rc -eq 3 ] && grep -q 'another primary' "$T/$1.out" ||
		    break
		_n=$((_n + 1))
		[ $_n -lt 25 ] || fail "$1: the mirror still holds the old" \
		    "session after 5 s: $(show "$T/$1.out")"
		sleep 0.2
	done
	[ $_rc -eq 0 ] || fail "$1: duet-testpeer exited $_rc: $(show "$T/$1.out")"
	[ $_n -eq 0 ] || echo "     (refused as busy $_n times first)"
	grep '^ok' "$T/$1.out"
	cmp "$T/mirror.img" "$T/$1.img" ||
	    fail "$1: the mirror's volume differs from the model"
}

mk_certs
write_conf "$T/mirror.conf"
start_mirror

echo "--- 1. the primary is killed mid-stream"
stream_bg killed
p=$LAST_PID
addr=$(local_addr "$T/killed.out")
kill -KILL "$p"
bg_wait "$p"
line=$(log_wait "$addr" 'lost|closed|reset|error|eof|ended') ||
    fail "no mirror log line about the end of the killed primary $addr:" \
    "$(log_for "$addr")"
echo "ok   log: $line"
fill_run after-kill 1001

echo "--- 2. SIGTERM to the mirror mid-stream"
stream_bg term
p=$LAST_PID
stop_mirror
rc=$?
[ $rc -eq 0 ] || fail "duet-mirror exited $rc on SIGTERM mid-stream"
bg_wait "$p"
rc=$?
[ $rc -eq 1 ] || fail "the primary exited $rc, expected 1 (mirror gone):" \
    "$(show "$T/term.out")"
echo "ok   primary saw: $(grep -v '^local\|hello accepted' "$T/term.out" | head -1)"
start_mirror
fill_run after-term 2002

echo "--- 3. the mirror crashes mid-stream"
stream_bg crash
p=$LAST_PID
crash_mirror
bg_wait "$p"
rc=$?
[ $rc -eq 1 ] || fail "the primary exited $rc, expected 1 (mirror gone):" \
    "$(show "$T/crash.out")"
echo "ok   primary saw: $(grep -v '^local\|hello accepted' "$T/crash.out" | head -1)"
start_mirror
peer --uuid "$U2" --ops 0 --expect-refusal uuid >"$T/uuid.out" 2>&1 ||
    fail "after a crash, another uuid was not refused: $(show "$T/uuid.out")"
fill_run after-crash 3003
stop_mirror
rc=$?
[ $rc -eq 0 ] || fail "duet-mirror exited $rc on SIGTERM, expected 0"
echo "PASS: $TNAME"
