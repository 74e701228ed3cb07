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
import os, socket, struct, sys, time

PORT = int(sys.argv[1])
NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454f5054
REQMAGIC = 0x25609513
SREPMAGIC = 0x67446698
READ, WRITE = 0, 1
N, LEN = 6, 4 << 20

def recvn(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(min(n - len(b), 1 << 20))
        if not c:
            raise EOFError("EOF after %d of %d bytes" % (len(b), n))
        b += c
    return bytes(b)

s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
magic, opt, hflags = struct.unpack(">QQH", recvn(s, 18))
assert magic == NBDMAGIC and opt == IHAVEOPT and hflags & 1
s.sendall(struct.pack(">I", 1 | 2))
# EXPORT_NAME: no block sizes asked for.
s.sendall(struct.pack(">QII", IHAVEOPT, 1, 4) + b"vol0")
recvn(s, 10)

data = os.urandom(N * LEN)
for i in range(N):
    s.sendall(struct.pack(">IHHQQI", REQMAGIC, 0, WRITE, i, i * LEN, LEN) +
              data[i * LEN:(i + 1) * LEN])
    magic, err, h = struct.unpack(">IIQ", recvn(s, 16))
    assert magic == SREPMAGIC and err == 0 and h == i, "write %d" % i

for i in range(N):
    s.sendall(struct.pack(">IHHQQI", REQMAGIC, 0, READ, 100 + i, i * LEN,
                          LEN))
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
        magic, err, h = struct.unpack(">IIQ", recvn(s, 16))
        i = h - 100
        assert magic == SREPMAGIC and err == 0 and i in left, \
            "reply: magic %x err %d handle %d" % (magic, err, h)
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
