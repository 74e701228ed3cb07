#!/bin/sh
# duetctl against a stand-in status socket (fakestatus.py), for the states
# a real pair cannot be put in on demand: a resync in progress with rate
# and eta, a mirror that cannot know its progress (nulls), a failed disk,
# a reply missing fields, odd label values; replies that are errors, not
# JSON, or never come; other verbs passed through; wait-sync across a
# daemon restart.
. "$(dirname "$0")/lib.sh"
need python3

DUETCTL=$DUET_BUILD/duetctl
[ -x "$DUETCTL" ] || fail "$DUETCTL is not built (make)"
S=$T/fake.sock
R=$T/reply.json
FAKE_PID=""

start_fake() {
	rm -f "$T/fake.out"
	python3 "$TOP/tests/integration/fakestatus.py" "$S" "$R" >"$T/fake.out" 2>&1 &
	FAKE_PID=$!
	BG_PIDS="$BG_PIDS $FAKE_PID"
	wait_for "$T/fake.out" listening "$FAKE_PID" || fail "fakestatus did not start"
}

stop_fake() {
	kill -TERM "$FAKE_PID"
	bg_wait "$FAKE_PID"
	FAKE_PID=""
}

# reply KEY=JSON...: the healthy primary's reply with fields replaced.
reply() {
	python3 - "$R" "$@" <<'PY'
import json, sys
st = {"ok": True, "volume": "vol0", "role": "primary", "mode": "sync",
      "connection": {"state": "connected", "peer": "192.0.2.7:7790",
                     "since": 1795350805},
      "disk": "up-to-date", "out_of_sync_bytes": 0,
      "resync": {"running": False, "progress": 1.0, "rate_bytes_per_s": 0,
                 "eta_s": None},
      "inflight": {"ops": 3, "bytes": 12288},
      "groups": [{"main": 0, "table": 0}, {"main": 2, "table": 1}],
      "counters": {"reads": 10, "writes": 200, "flushes": 3, "trims": 1,
                   "zeroes": 0, "bytes_read": 40960,
                   "bytes_written": 1258291, "errors": 0, "reconnects": 1},
      "last_error": None, "uptime_s": 3720,
      "version": {"duet": "0.1.0", "protocol": 1}, "clients": 2}
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    o = st
    *path, last = k.split(".")
    for p in path:
        o = o[p]
    if v == "DELETE":
        del o[last]
    else:
        o[last] = json.loads(v)
open(sys.argv[1], "w").write(json.dumps(st) + "\n")
PY
}

# run WANT_RC ARGS...: duetctl -s $S ARGS, output in $T/out.
run() {
	_want=$1
	shift
	"$DUETCTL" -s "$S" "$@" >"$T/out" 2>&1
	_rc=$?
	[ $_rc -eq "$_want" ] || fail "duetctl $*: exit $_rc, not $_want:
$(cat "$T/out")"
}

has() {
	grep -Eq "$1" "$T/out" || fail "no /$1/ in:
$(cat "$T/out")"
}

hasnt() {
	grep -Eq "$1" "$T/out" && fail "/$1/ should not be in:
$(cat "$T/out")"
	return 0
}

reply
start_fake

echo "--- healthy"
run 0 status
has '^vol0 \(primary\): healthy$'
has 'connection +connected, peer 192\.0\.2\.7:7790, since 20[0-9-]+ [0-9:]+ \(.* ago\)$'
has 'inflight +3 ops, 12\.0 KiB$'
has 'queues +0:0/0 1:2/1 '
has 'ops +reads 10, writes 200, flushes 3, trims 1, zeroes 0$'
has 'bytes +read 40\.0 KiB, written 1\.2 MiB$'
has 'uptime +1h2m0s$'
run 0 status --json
python3 "$TOP/tests/integration/check_status.py" --state connected <"$T/out" ||
    fail "check_status.py refuses the healthy sample"
cmp -s "$T/out" "$R" || fail "--json did not pass the reply through unchanged"

echo "--- primary resyncing"
reply out_of_sync_bytes=80740352 resync.running=true resync.progress=0.42 \
    resync.rate_bytes_per_s=12582912 resync.eta_s=63
run 1 status
has '^vol0 \(primary\): DEGRADED$'
has 'why +resync running \(42\.0%\)$'
has 'resync +running, 42\.0% done, 12\.0 MiB/s, eta 1m3s$'
has 'out of sync +77\.0 MiB$'
run 1 status --json
python3 "$TOP/tests/integration/check_status.py" --resync running <"$T/out" ||
    fail "check_status.py refuses the resync sample"
run 0 metrics
has '^duet_healthy\{volume="vol0",role="primary"\} 0$'
has '^duet_resync_progress_ratio\{volume="vol0",role="primary"\} 0\.42'
has '^duet_resync_eta_seconds\{volume="vol0",role="primary"\} 63$'
has '^duet_out_of_sync_bytes\{volume="vol0",role="primary"\} 80740352$'

echo "--- mirror during a sync: what it cannot know is null"
reply role='"mirror"' disk='"inconsistent"' out_of_sync_bytes=null \
    resync.running=true resync.progress=null resync.rate_bytes_per_s=null \
    resync.eta_s=null clients=DELETE
run 1 status
has '^vol0 \(mirror\): DEGRADED$'
has 'why +disk inconsistent$'
has 'resync +running$'
has 'out of sync +unknown$'
run 1 status --json
python3 "$TOP/tests/integration/check_status.py" --role mirror --disk inconsistent \
    <"$T/out" || fail "check_status.py refuses the mirror sample"
run 0 metrics
has '^duet_disk_state\{volume="vol0",role="mirror",state="inconsistent"\} 1$'
hasnt '^duet_out_of_sync_bytes'
hasnt '^duet_resync_progress_ratio'

echo "--- a mirror up to date that cannot count bytes is healthy"
reply role='"mirror"' out_of_sync_bytes=null resync.progress=null
run 0 status

echo "--- failed disk, listening, missing fields"
reply disk='"failed"' last_error='"volume: write at 4096: Input/output error"'
run 1 status
has 'why +disk failed$'
has 'last error +volume: write at 4096: Input/output error$'
reply role='"mirror"' connection.state='"listening"' connection.peer=null
run 1 status
has 'why +connection listening$'
has 'connection +listening, since'
echo '{"ok":true,"volume":"vol0"}' >"$R"
run 1 status
has '^vol0 \(\?\): DEGRADED$'
has 'disk +\?$'
has 'queues +\?'
run 0 metrics
has '^duet_healthy\{volume="vol0",role=""\} 0$'

echo "--- label values are escaped"
# volume v"o\l (a name the config would refuse; duetctl must not care)
reply volume='"v\"o\\l"' extra_field='{"new": 1}'
run 0 metrics
has '^duet_writes_total\{volume="v\\"o\\\\l",role="primary"\} 200$'

echo "--- bad replies"
echo '{"ok":false,"error":{"code":"busy","message":"try later"}}' >"$R"
run 2 status
has "$S: status: try later \(busy\)"
echo 'this is not json' >"$R"
run 2 status
has "$S: the reply is not a JSON object"
echo '!close' >"$R"
run 2 status
has "$S: the daemon closed the connection without a reply"
run 2 metrics
# wait-sync takes a closed connection for a restart, and waits ...
run 3 wait-sync --timeout 1
has 'not in sync after 1 s: the daemon closed the connection'
# ... and a daemon busy with other status clients for one that answers
# later.
echo '{"ok":false,"error":{"code":"busy","message":"try later"}}' >"$R"
run 3 wait-sync --timeout 1
has 'not in sync after 1 s: the daemon is busy with other status clients'

echo "--- other verbs"
reply
run 0 verify --full now
has '^\{"ok": true, "verb": "verify", "args": "--full now"\}$'
run 2 fail
has "$S: fail: no, not now \(not-permitted\)"

echo "--- wait-sync"
echo '!hang' >"$R"
start=$(date +%s)
run 3 wait-sync --timeout 1
[ $(( $(date +%s) - start )) -le 4 ] || fail "wait-sync --timeout 1 on a hung daemon took too long"
has 'not in sync after 1 s: no reply'
reply connection.state='"connecting"'
"$DUETCTL" -s "$S" wait-sync --timeout 15 >"$T/ws" 2>&1 &
WS=$!
BG_PIDS="$BG_PIDS $WS"
sleep 0.5
stop_fake		# the daemon restarts ...
sleep 0.5
reply			# ... and comes back in sync
start_fake
bg_wait "$WS"
rc=$?
[ $rc -eq 0 ] || fail "wait-sync across a restart: exit $rc: $(cat "$T/ws")"
stop_fake
run 2 wait-sync
has "$S: connect: "
echo PASS
