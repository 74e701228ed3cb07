#!/bin/sh
# 29-primary-close: when duet-primary closes an NBD connection over TCP,
# the answers it queued before reach the client, followed by EOF, not a
# reset (a socket closed with input unread sends one, and the kernel drops
# what it still had to send).
#
# A raw client pipelines six 4 MiB READs, then a request with a bad magic
# (the server answers what came before and closes), then 1 MiB of junk the
# server never reads. Only then does it read: all six replies whole, with
# the data a client wrote there first, then EOF.
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"
need python3
export PYTHONPATH="$TOP/tests"	# nbdraw.py

NBD_PORT=$(free_port)
mk_certs
write_conf "$T/mirror.conf"
write_primary_conf "$T/primary.conf" sync
sed -i "s|^  nbd_socket = .*|&\n  nbd_listen = \"127.0.0.1:$NBD_PORT\";|" \
    "$T/primary.conf"
start_mirror
start_primary
wait_synced 1

cat >"$T/client.py" <<'EOF'
import os, socket, sys, time
from nbdraw import *

PORT = int(sys.argv[1])
N, LEN = 6, 4 << 20

s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
export_name(s)

data = os.urandom(N * LEN)
for i in range(N):
    request(s, WRITE, i, i * LEN, LEN, payload=data[i * LEN:(i + 1) * LEN])
    err, h = reply(s)
    assert err == 0 and h == i, "write %d: error %d" % (i, err)

for i in range(N):
    request(s, READ, 100 + i, i * LEN, LEN)
s.sendall(b"\xde\xad\xbe\xef" + b"\0" * 24)
try:
    s.sendall(os.urandom(1 << 20))
except OSError as e:
    print("FAIL sending the junk: %s" % e)
    sys.exit(1)
time.sleep(1)
try:
    left = set(range(N))	# replies may come in any order
    while left:
        err, h = reply(s)
        i = h - 100
        assert err == 0 and i in left, "reply: error %d handle %d" % (err, h)
        left.remove(i)
        if recvn(s, LEN) != data[i * LEN:(i + 1) * LEN]:
            print("FAIL read %d: the data differs" % i)
            sys.exit(1)
    print("ok   six READ replies whole after the bad request")
    rest = s.recv(16)
    if rest != b"":
        print("FAIL after the replies: %r, not EOF" % rest)
        sys.exit(1)
    print("ok   then EOF")
except (ConnectionResetError, EOFError) as e:
    print("FAIL %s" % e)
    sys.exit(1)
EOF

timeout 60 python3 "$T/client.py" "$NBD_PORT" >"$T/client.out" 2>&1
rc=$?
cat "$T/client.out"
[ $rc -eq 0 ] || fail "the raw client failed ($rc)"
grep -q 'request: .*closing the connection' "$PRIMARY_LOG" ||
    fail "no log line for the bad request"
_alive "$PRIMARY_PID" || fail "duet-primary died"
stop_primary || fail "duet-primary did not stop cleanly"
echo "PASS: $TNAME"
