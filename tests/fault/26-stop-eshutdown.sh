#!/bin/sh
# 26-stop-eshutdown: requests that reach a stopping primary are answered
# with NBD_ESHUTDOWN (108), as the NBD protocol asks of a server that shuts
# down, not left unanswered.
#
# Sync mode, the link blackholed: a client's WRITE waits for an ack that
# never comes, which holds the stop open (primary.stop_timeout 4 s). After
# SIGTERM the same connection sends a READ and a WRITE: each is answered at
# once with ESHUTDOWN, the WRITE after its payload. The primary then exits
# 0 at its stop timeout. Restarted with the link passing, it resyncs, and
# after clean stops the volumes are equal.
. "$(dirname "$0")/lib.sh"
need python3
export PYTHONPATH="$TOP/tests"	# nbdraw.py

fault_setup sync 64M
sed -i 's/^  mode = "sync";$/&\n  stop_timeout = 4;\n  congestion_timeout = 60;/' \
    "$T/primary.conf"
grep -q '^  stop_timeout = 4;$' "$T/primary.conf" ||
    fail "cannot set primary.stop_timeout in $T/primary.conf"
start_mirror
start_primary
wait_in_sync

cat >"$T/client.py" <<'EOF'
import os, socket, sys, time
from nbdraw import *

ESHUTDOWN = 108

s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
export_name(s)

request(s, WRITE, 1, 0, 4096, payload=b"\x11" * 4096)
print("sent", flush=True)
# The caller sends SIGTERM, then creates the go file.
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
time.sleep(0.5)
t0 = time.time()
request(s, READ, 2, 65536, 4096)
err, h = reply(s)
assert h == 2, "a reply for handle %d, not the READ's" % h
assert err == ESHUTDOWN, "READ: error %d, not ESHUTDOWN" % err
print("ok   READ after SIGTERM: ESHUTDOWN after %.0f ms" % ((time.time() - t0) * 1000))
request(s, WRITE, 3, 65536, 65536, payload=b"\x22" * 65536)
err, h = reply(s)
assert h == 3 and err == ESHUTDOWN, "WRITE: handle %d error %d" % (h, err)
print("ok   WRITE after SIGTERM: ESHUTDOWN after its payload")
EOF

proxy blackhole
bg python3 "$T/client.py" "$NBD_SOCK" "$T/go" >"$T/client.out" 2>&1
CLIENT=$LAST_PID
wait_for "$T/client.out" '^sent' || fail "the client did not start"
sleep 1
kill -TERM "$PRIMARY_PID"
touch "$T/go"
bg_wait $CLIENT
rc=$?
cat "$T/client.out"
[ $rc = 0 ] || fail "the client's requests were not answered with ESHUTDOWN"
stop_primary
rc=$?
[ $rc = 0 ] || fail "duet-primary exited $rc after its stop timeout"
grep -q 'stopping after primary.stop_timeout' "$PRIMARY_LOG" ||
    fail "the stop did not wait for the WRITE in flight"

proxy pass
rm -f "$NBD_SOCK"
start_primary
wait_in_sync
stop_primary || fail "duet-primary did not stop cleanly"
stop_mirror || fail "duet-mirror did not stop cleanly"
same_images
echo "PASS: $TNAME"
