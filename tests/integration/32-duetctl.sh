#!/bin/sh
# duetctl against a real pair: the status schema in each state the test
# can produce (mirror waiting, initial sync running, connected, mirror
# down), the table and its exit codes, --json, metrics, wait-sync (0 after
# a sync, 3 with the mirror down), and exit 2 for a bad socket, an unknown
# command, an unknown option and a missing -s/-c; -h and --help exit 0. The socket keeps answering through garbage
# and a client that never reads.
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"
need python3

DUETCTL=$DUET_BUILD/duetctl
[ -x "$DUETCTL" ] || fail "$DUETCTL is not built (make)"
CHECK="python3 $TOP/tests/integration/check_status.py"
SIZE=128M

# schema SOCK ARGS...: status --json from SOCK passes check_status ARGS.
schema() {
	_s=$1
	shift
	"$DUETCTL" -s "$_s" status --json >"$T/st.json"
	_rc=$?
	[ $_rc -le 1 ] || fail "status --json exited $_rc"
	$CHECK "$@" <"$T/st.json" || fail "schema ($*): $(cat "$T/st.json")"
	return $_rc
}

check_usage "$DUETCTL" 2
mk_certs
write_conf "$T/mirror.conf"
write_primary_conf "$T/primary.conf" sync
# Random data, so that the initial sync takes long enough to be seen.
head -c 128M /dev/urandom >"$T/primary.img"

echo "--- mirror alone"
start_mirror
schema "$MIRROR_STATUS" --role mirror --state listening --resync idle
[ $? -eq 1 ] || fail "mirror without a primary: status --json did not exit 1"
"$DUETCTL" -s "$MIRROR_STATUS" status >"$T/table" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "mirror without a primary: status exited $rc: $(cat "$T/table")"
grep -q DEGRADED "$T/table" || fail "no DEGRADED in: $(cat "$T/table")"

echo "--- initial sync"
start_primary
"$DUETCTL" -s "$PRIMARY_STATUS" wait-sync --timeout 60 >"$T/ws.out" 2>&1 &
WS_PID=$!
BG_PIDS="$BG_PIDS $WS_PID"
seen=0
n=0
while [ $n -lt 400 ] && ! grep -q 'sync complete' "$PRIMARY_LOG"; do
	"$DUETCTL" -s "$PRIMARY_STATUS" status --json >"$T/sync.json" 2>&1
	if grep -q '"running":true' "$T/sync.json"; then
		$CHECK --role primary --state connected --resync running \
		    <"$T/sync.json" || fail "schema during sync: $(cat "$T/sync.json")"
		"$DUETCTL" -s "$PRIMARY_STATUS" status >"$T/table" 2>&1
		rc=$?
		if grep -q 'resync .*running' "$T/table"; then
			[ $rc -eq 1 ] || fail "status during sync exited $rc"
			grep -q 'done' "$T/table" || fail "no progress in: $(cat "$T/table")"
		fi
		seen=$((seen + 1))
		[ $seen -ge 3 ] && break
	fi
	n=$((n + 1))
done
echo "samples with the sync running: $seen"
[ $seen -gt 0 ] || echo "note: the sync ran too fast to be seen (tests/integration/33 covers the table)"
wait_synced 1
bg_wait "$WS_PID"
rc=$?
[ $rc -eq 0 ] || fail "wait-sync exited $rc: $(cat "$T/ws.out")"

echo "--- connected"
"$DUETCTL" -s "$PRIMARY_STATUS" wait-sync --timeout 20 ||
    fail "wait-sync on a synced pair exited $?"
"$DUETCTL" -s "$MIRROR_STATUS" wait-sync --timeout 20 ||
    fail "wait-sync on the mirror exited $?"
for who in primary mirror; do
	if [ $who = primary ]; then s=$PRIMARY_STATUS; else s=$MIRROR_STATUS; fi
	schema "$s" --role $who --state connected --disk up-to-date --resync idle ||
	    fail "$who: status --json exited $? when healthy"
	"$DUETCTL" -s "$s" status >"$T/table" 2>&1 ||
	    fail "$who: status exited $? when healthy: $(cat "$T/table")"
	echo "$who:"; sed 's/^/    /' "$T/table"
	for re in "vol0 \($who\): healthy" 'connection +connected, peer ' \
	    'disk +up-to-date' 'out of sync +0 B' 'resync +idle' 'queues +0:' \
	    'uptime' 'version +duet '; do
		grep -Eq "$re" "$T/table" || fail "$who: no /$re/ in the table"
	done
	"$DUETCTL" -s "$s" metrics >"$T/metrics" ||
	    fail "$who: metrics exited $?"
	for re in "^# TYPE duet_writes_total counter\$" \
	    "^duet_writes_total\{volume=\"vol0\",role=\"$who\"\} [0-9]+\$" \
	    "^duet_healthy\{volume=\"vol0\",role=\"$who\"\} 1\$" \
	    "^duet_connection_state\{volume=\"vol0\",role=\"$who\",state=\"connected\"\} 1\$" \
	    "^duet_group_main_queue\{volume=\"vol0\",role=\"$who\",group=\"3\"\} [0-9]+\$"; do
		grep -Eq "$re" "$T/metrics" || fail "$who: no /$re/ in metrics:
$(cat "$T/metrics")"
	done
	# Every sample line: name{labels} number; every name has HELP and TYPE.
	grep -v '^#' "$T/metrics" | grep -Ev '^[a-z_]+\{[^}]*\} -?[0-9.e+-]+$' &&
	    fail "$who: malformed metric lines (above)"
	for m in $(grep -v '^#' "$T/metrics" | sed 's/{.*//' | sort -u); do
		grep -q "^# TYPE $m " "$T/metrics" || fail "$m has no TYPE"
		grep -q "^# HELP $m " "$T/metrics" || fail "$m has no HELP"
	done
done
"$DUETCTL" -c "$T/primary.conf" status >/dev/null ||
    fail "-c primary.conf status exited $?"
[ "$("$DUETCTL" -c "$T/mirror.conf" status --json)" != "" ] ||
    fail "-c mirror.conf status --json printed nothing"

echo "--- the socket under abuse"
python3 - "$PRIMARY_STATUS" <<'PY' || fail "status socket abuse: see above"
import json, socket, sys, time
path = sys.argv[1]
def conn():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    return s
def reply(s):
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(65536)
        if not d:
            break
        buf += d
    return json.loads(buf)
# a client that asks and never reads, many times over
hog = conn()
hog.setblocking(False)
try:
    for _ in range(20000):
        hog.send(b"status\n")
except (BlockingIOError, BrokenPipeError, ConnectionResetError):
    pass
s = conn()
t = time.time()
s.sendall(b"status\n")
r = reply(s)
assert r["ok"] is True and time.time() - t < 2, "status slow or failed behind a hog"
s.sendall(b"\xff\xfe\x00garbage\n")
r = reply(s)
assert r["ok"] is False and r["error"]["code"] == "bad-argument", r
s.sendall(b"frobnicate\n")
r = reply(s)
assert r["error"]["code"] == "unknown-command", r
s.sendall(b"x" * 5000 + b"\n")
r = reply(s)
assert r["error"]["code"] == "line-too-long", r
s2 = conn()
s2.sendall(b"status\n")
assert reply(s2)["ok"] is True
hog.close()
print("garbage, unknown, too long, a hog: answered, still serving")
PY

echo "--- errors"
"$DUETCTL" -s "$T/no/such.sock" status >"$T/err" 2>&1
rc=$?
[ $rc -eq 2 ] || fail "bad socket: exit $rc, not 2"
grep -q "$T/no/such.sock" "$T/err" || fail "bad socket: message lacks the path: $(cat "$T/err")"
grep -q "No such file or directory" "$T/err" || fail "bad socket: no strerror: $(cat "$T/err")"
"$DUETCTL" -s "$PRIMARY_STATUS" frobnicate >"$T/err" 2>&1
rc=$?
[ $rc -eq 2 ] || fail "unknown command: exit $rc, not 2"
grep -q "unknown-command" "$T/err" || fail "unknown command: $(cat "$T/err")"
"$DUETCTL" status >"$T/err" 2>&1
[ $? -eq 2 ] || fail "no -s/-c: exit not 2"
"$DUETCTL" -s "$PRIMARY_STATUS" status --bogus >"$T/err" 2>&1
[ $? -eq 2 ] || fail "status --bogus: exit not 2"
"$DUETCTL" -s "$PRIMARY_STATUS" wait-sync --timeout x >"$T/err" 2>&1
[ $? -eq 2 ] || fail "wait-sync --timeout x: exit not 2"

echo "--- mirror down"
stop_mirror || fail "duet-mirror exited with $?"
n=0
until grep -Eq '"state":"(disconnected|connecting)"' "$T/st.json" 2>/dev/null; do
	"$DUETCTL" -s "$PRIMARY_STATUS" status --json >"$T/st.json"
	n=$((n + 1))
	[ $n -le 50 ] || fail "the primary still says connected: $(cat "$T/st.json")"
	sleep 0.1
done
schema "$PRIMARY_STATUS" --role primary --disk up-to-date
[ $? -eq 1 ] || fail "mirror down: status --json did not exit 1"
"$DUETCTL" -s "$PRIMARY_STATUS" status >"$T/table" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "mirror down: status exited $rc"
echo "primary, mirror down:"; sed 's/^/    /' "$T/table"
grep -q DEGRADED "$T/table" || fail "mirror down: no DEGRADED"
grep -Eq 'connection +(disconnected|connecting)' "$T/table" ||
    fail "mirror down: connection line: $(cat "$T/table")"
start=$(date +%s)
"$DUETCTL" -s "$PRIMARY_STATUS" wait-sync --timeout 2 >"$T/err" 2>&1
rc=$?
secs=$(( $(date +%s) - start ))
[ $rc -eq 3 ] || fail "wait-sync with the mirror down: exit $rc, not 3"
[ $secs -ge 1 ] && [ $secs -le 5 ] || fail "wait-sync --timeout 2 took ${secs}s"
grep -q "not in sync" "$T/err" || fail "wait-sync timeout message: $(cat "$T/err")"
"$DUETCTL" -s "$PRIMARY_STATUS" metrics | grep -q '^duet_healthy{volume="vol0",role="primary"} 0$' ||
    fail "metrics: duet_healthy is not 0 with the mirror down"

stop_primary || fail "duet-primary exited with $?"
[ -e "$PRIMARY_STATUS" ] && fail "the primary left its status socket behind"
echo PASS
