#!/bin/sh
# 22-primary-bad-input: duet-primary answers bad NBD requests with the
# error the protocol asks for and goes on serving, while an honest client
# (fio with verify, in a loop) works without error the whole time:
#
#   - read past the end -> EINVAL; write past the end -> ENOSPC (its
#     payload is skipped, the connection goes on); unaligned offset or
#     length -> EINVAL; unknown command 99 -> EINVAL; WRITE with an unknown
#     flag, or with a flag only WRITE_ZEROES takes -> EINVAL; FLUSH with an
#     offset -> EINVAL; WRITEs of 8 MiB and 32 MiB (over the 4 MiB
#     maximum, from a client that never asked for block sizes) -> EINVAL
#     after their payload, and the connection goes on;
#   - a client that sends garbage instead of the handshake is closed, and
#     one with valid flags but a garbage option header too;
#   - a client that sends a WRITE header and part of its payload, then
#     vanishes: nothing of it is written, the others go on;
#   - with an in-flight window of one operation (the primary stops reading
#     its clients after each replicated write and resumes on the ack): a
#     WRITE whose payload arrives in two parts, then a TRIM and a FLUSH
#     sent only after its answer, are all answered (the read low watermark
#     set for the WRITE's payload must not outlive the pause).
#
# Good requests between the bad ones (write, then read back) show that the
# framing stays intact. At the end, after a clean stop, the mirror equals
# the primary, and the primary equals what a client read back before.
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"
need python3
need fio
need nbdcopy
export PYTHONPATH="$TOP/tests"	# nbdraw.py

SIZE=64M
mk_certs
write_conf "$T/mirror.conf"
write_primary_conf "$T/primary.conf" sync
start_mirror
start_primary
wait_synced 1

cat >"$T/client.py" <<'EOF'
# A raw NBD client: fixed newstyle handshake by hand, simple replies only.
import os, socket, struct, sys, time
from nbdraw import recvn

SOCK = sys.argv[1]
SIZE = int(sys.argv[2])
NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454f5054
REPMAGIC = 0x0003e889045565a9
REQMAGIC = 0x25609513
SREPMAGIC = 0x67446698
NBD_OPT_GO = 7
NBD_REP_ACK = 1
NBD_REP_INFO = 3
READ, WRITE, DISC, FLUSH, TRIM, CACHE, WZ = 0, 1, 2, 3, 4, 5, 6
EINVAL, ENOSPC = 22, 28
failures = []

def check(cond, what):
    if cond:
        print("ok   " + what)
    else:
        print("FAIL " + what)
        failures.append(what)

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(SOCK)
    return s

def greeting(s):
    magic, opt, hflags = struct.unpack(">QQH", recvn(s, 18))
    assert magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting"
    assert hflags & 1, "server is not fixed newstyle"
    return hflags

def handshake(name=b"vol0"):
    s = connect()
    greeting(s)
    s.sendall(struct.pack(">I", 1 | 2))		# FIXED_NEWSTYLE | NO_ZEROES
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(struct.pack(">QII", IHAVEOPT, NBD_OPT_GO, len(data)) + data)
    size = flags = None
    while True:
        magic, opt, rtype, rlen = struct.unpack(">QIII", recvn(s, 20))
        assert magic == REPMAGIC, "bad option reply magic %x" % magic
        assert opt == NBD_OPT_GO, "reply for option %d" % opt
        payload = recvn(s, rlen)
        if rtype & 0x80000000:
            raise RuntimeError("GO refused: type %x %r" % (rtype, payload))
        if rtype == NBD_REP_INFO:
            (itype,) = struct.unpack(">H", payload[:2])
            if itype == 0:
                size, flags = struct.unpack(">QH", payload[2:12])
        elif rtype == NBD_REP_ACK:
            break
    assert size == SIZE, "export size %r, expected %d" % (size, SIZE)
    return s

handle_ctr = [0x1000]

def request(s, cmd, off, length, flags=0, payload=b"", handle=None):
    if handle is None:
        handle_ctr[0] += 1
        handle = handle_ctr[0]
    s.sendall(struct.pack(">IHHQQI", REQMAGIC, flags, cmd, handle, off,
                          length) + payload)
    return handle

def reply(s, handle, readlen=0):
    magic, err, h = struct.unpack(">IIQ", recvn(s, 16))
    assert magic == SREPMAGIC, "bad reply magic %x" % magic
    assert h == handle, "reply for handle %x, expected %x" % (h, handle)
    data = recvn(s, readlen) if err == 0 and readlen else b""
    return err, data

def cmd(s, c, off, length, flags=0, payload=b""):
    h = request(s, c, off, length, flags, payload)
    return reply(s, h, length if c == READ else 0)

def closed(s, wait=10):
    """True when the server closes s (EOF or reset) within wait s."""
    s.settimeout(wait)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False

# Our regions: 16M..24M, the target of the refused writes, and 28M..30M
# for good writes (the honest fio uses 32M..48M).
BASE = 16 << 20
GOOD = 28 << 20

def good_roundtrip(s, tag):
    """A write and its read-back: the connection's framing is intact."""
    off = GOOD + (tag % 32) * 65536
    data = os.urandom(65536)
    err, _ = cmd(s, WRITE, off, len(data), payload=data)
    if err:
        return False
    err, back = cmd(s, READ, off, len(data))
    return err == 0 and back == data

def bad_requests():
    s = handshake()
    n = 0
    pat = os.urandom(8 << 20)
    for i in (0, 4 << 20):
        err, _ = cmd(s, WRITE, BASE + i, 4 << 20, payload=pat[i:i + (4 << 20)])
        check(err == 0, "pattern written at %d" % (BASE + i))
    def expect(what, got, want):
        nonlocal n
        check(got == want, "%s: error %d (expected %d)" % (what, got, want))
        n += 1
        check(good_roundtrip(s, n), "%s: a good request after it works" % what)

    err, _ = cmd(s, READ, SIZE - 4096, 8192)
    expect("READ across the end", err, EINVAL)
    err, _ = cmd(s, READ, SIZE, 512)
    expect("READ at the end", err, EINVAL)
    err, _ = cmd(s, READ, (1 << 64) - 512, 1024)
    expect("READ at offset 2^64-512 (overflow)", err, EINVAL)
    err, _ = cmd(s, WRITE, SIZE - 4096, 8192, payload=b"\xee" * 8192)
    expect("WRITE across the end", err, ENOSPC)
    err, _ = cmd(s, WRITE, SIZE, 4096, payload=b"\xee" * 4096)
    expect("WRITE at the end", err, ENOSPC)
    err, _ = cmd(s, WZ, SIZE - 512, 1024)
    expect("WRITE_ZEROES across the end", err, ENOSPC)
    err, _ = cmd(s, TRIM, SIZE - 512, 1024)
    expect("TRIM across the end", err, EINVAL)
    err, _ = cmd(s, READ, 100, 512)
    expect("READ at offset 100", err, EINVAL)
    err, _ = cmd(s, WRITE, BASE + 100, 512, payload=b"\xee" * 512)
    expect("WRITE at offset 100", err, EINVAL)
    err, _ = cmd(s, WRITE, BASE, 100, payload=b"\xee" * 100)
    expect("WRITE of 100 bytes", err, EINVAL)
    err, _ = cmd(s, 99, 0, 4096)
    expect("command 99", err, EINVAL)
    err, _ = cmd(s, WRITE, BASE, 4096, flags=0x8000, payload=b"\xee" * 4096)
    expect("WRITE with flag 0x8000", err, EINVAL)
    err, _ = cmd(s, WRITE, BASE, 4096, flags=0x0002, payload=b"\xee" * 4096)
    expect("WRITE with NO_HOLE (a WRITE_ZEROES flag)", err, EINVAL)
    err, _ = cmd(s, FLUSH, 4096, 0)
    expect("FLUSH with an offset", err, EINVAL)
    err, _ = cmd(s, READ, BASE, 0)
    expect("READ of 0 bytes", err, EINVAL)
    err, _ = cmd(s, READ, 0, 8 << 20)
    expect("READ of 8 MiB (over the 4 MiB maximum)", err, EINVAL)
    # Over the maximum but under 2^25: refused, payload skipped, goes on.
    err, _ = cmd(s, WRITE, BASE, 8 << 20, payload=b"\xee" * (8 << 20))
    expect("WRITE of 8 MiB (over the 4 MiB maximum)", err, EINVAL)
    # None of the refused writes left a byte behind.
    err, back = cmd(s, READ, BASE, 4 << 20)
    err2, back2 = cmd(s, READ, BASE + (4 << 20), 4 << 20)
    check(err == 0 and err2 == 0 and back + back2 == pat,
          "no refused WRITE changed 16M..24M")
    err, back = cmd(s, READ, SIZE - (4 << 20), 4 << 20)
    check(err == 0 and back.count(0) == len(back),
          "the end of the volume is still zero")

    # 2^25 bytes, the most the spec has such a client send: refused
    # after its payload, not with a close that would race the payload.
    err, _ = cmd(s, WRITE, 0, 32 << 20, payload=b"\xee" * (32 << 20))
    expect("WRITE of 32 MiB (over the 4 MiB maximum)", err, EINVAL)
    err, back = cmd(s, READ, BASE, 4 << 20)
    check(err == 0 and back == pat[:4 << 20],
          "after the 32 MiB WRITE: the connection goes on, 16M..20M intact")
    s.close()

def garbage():
    # Garbage where the client flags should be.
    s = connect()
    greeting(s)
    s.sendall(b"GET / HTTP/1.1\r\nHost: duet\r\n\r\n")
    check(closed(s), "garbage instead of the client flags: closed")
    s.close()
    # Valid flags, then garbage where an option header should be.
    s = connect()
    greeting(s)
    s.sendall(struct.pack(">I", 3) + os.urandom(64))
    check(closed(s), "garbage instead of an option: closed")
    s.close()
    # Garbage without even reading the greeting.
    s = connect()
    s.sendall(b"\xff" * 4096)
    check(closed(s), "garbage before reading the greeting: closed")
    s.close()
    # A good handshake, then garbage instead of a request header.
    s = connect()
    s.close()
    s = handshake()
    check(good_roundtrip(s, 70), "a fresh client works")
    s.sendall(b"\x00" * 28)
    check(closed(s), "garbage instead of a request header: closed")
    s.close()

def vanish():
    # A known pattern at 20M..21M, then a WRITE of 1 MiB there that stops
    # after 100 KiB of payload and a client that goes away.
    off = BASE + (4 << 20)
    pat = os.urandom(1 << 20)
    s = handshake()
    err, _ = cmd(s, WRITE, off, len(pat), payload=pat)
    check(err == 0, "pattern written at 20M")
    request(s, WRITE, off, 1 << 20, payload=b"\xdd" * (100 << 10))
    s.close()
    # The same with a refused (past the end) WRITE, whose payload the
    # server is busy skipping when the client goes.
    s = handshake()
    request(s, WRITE, SIZE - 4096, 1 << 20, payload=b"\xdd" * (100 << 10))
    s.close()
    # And one that vanishes right after the header.
    s = handshake()
    request(s, WRITE, off, 4096)
    s.close()
    time.sleep(0.5)
    s = handshake()
    err, back = cmd(s, READ, off, len(pat))
    check(err == 0 and back == pat,
          "the half-sent WRITEs left 20M..21M as it was")
    check(good_roundtrip(s, 80), "a new client works after them")
    err, _ = cmd(s, FLUSH, 0, 0)
    check(err == 0, "FLUSH works")
    request(s, DISC, 0, 0)
    check(closed(s), "DISC: closed")
    s.close()

def window():
    s = handshake()
    for i in range(3):
        off = BASE + i * (1 << 20)
        data = os.urandom(256 << 10)
        h = request(s, WRITE, off, len(data), payload=data[:1000])
        time.sleep(0.2)
        s.sendall(data[1000:])
        err, _ = reply(s, h)
        check(err == 0, "round %d: WRITE sent in two parts: answered" % i)
        try:
            err, _ = cmd(s, TRIM, off, 4096)
            check(err == 0, "round %d: the TRIM after it: answered" % i)
            err, _ = cmd(s, FLUSH, 0, 0)
            check(err == 0, "round %d: the FLUSH after it: answered" % i)
            err, back = cmd(s, READ, off, len(data))
            check(err == 0 and back == bytes(4096) + data[4096:],
                  "round %d: read back: trimmed, then the data" % i)
        except socket.timeout:
            check(False, "round %d: no answer within 10 s" % i)
            return
    request(s, DISC, 0, 0)
    s.close()

try:
    {"bad": bad_requests, "garbage": garbage, "vanish": vanish,
     "window": window}[sys.argv[3]]()
except Exception as e:
    print("FAIL %s: %s: %s" % (sys.argv[3], type(e).__name__, e))
    sys.exit(1)
sys.exit(1 if failures else 0)
EOF

# The honest client: fio randwrite + verify on 32M..48M, over and over
# until told to stop. Each round is a fresh NBD connection.
cat >"$T/honest.sh" <<EOF
n=0
while [ ! -e "$T/stop" ] || [ \$n -lt 2 ]; do
	timeout -k 5 60 fio --name=honest --ioengine=nbd --uri="$NBD_URI" \
	    --rw=randwrite --bs=4k --iodepth=16 --offset=32M --size=16M --verify=crc32c \
	    --do_verify=1 --randseed=\$((n + 1)) --verify_state_save=0 \
	    >"$T/honest.\$n.out" 2>&1 || { echo "honest fio round \$n failed"; exit 1; }
	n=\$((n + 1))
done
echo "\$n rounds"
EOF
cd "$T" || fail "cd $T"
bg sh "$T/honest.sh"
honest=$LAST_PID
# Let it get going before the bad clients come.
wait_for "$PRIMARY_LOG" 'client [0-9]+ \(unix\): transmission' "$honest" ||
    fail "the honest fio did not connect: $(cat "$T"/honest.*.out)"

for part in bad garbage vanish; do
	timeout 60 python3 "$T/client.py" "$NBD_SOCK" 67108864 $part \
	    >"$T/$part.out" 2>&1
	rc=$?
	cat "$T/$part.out"
	[ $rc -eq 0 ] || fail "raw client ($part) failed"
	_alive "$PRIMARY_PID" || fail "duet-primary died during $part"
done

# What the daemon said about them.
grep -q 'refused: Invalid argument' "$PRIMARY_LOG" ||
    fail "no log line for a refused request"
grep -qE 'client flags .*closing the connection' "$PRIMARY_LOG" ||
    fail "no log line for the garbage client flags"

touch "$T/stop"
bg_wait $honest || fail "the honest client failed: $(tail -20 "$T"/honest.*.out)"
grep -l 'err= *[1-9]' "$T"/honest.*.out && fail "the honest fio saw errors"
echo "ok   the honest client: $(ls "$T"/honest.*.out | wc -l) fio rounds, no error"

# The window of one operation: a restart with max_inflight = 1 (the new
# session starts with a full sync; the mirror keeps its volume).
stop_primary || fail "duet-primary exited with $?"
sed 's/^  mode = "sync";$/&\n  max_inflight = 1;/' "$T/primary.conf" \
    >"$T/primary1.conf"
grep -q 'max_inflight = 1;' "$T/primary1.conf" ||
    fail "test setup: sed did not set max_inflight"
start_primary "$T/primary1.conf"
wait_synced 2
timeout 60 python3 "$T/client.py" "$NBD_SOCK" 67108864 window \
    >"$T/window.out" 2>&1
rc=$?
cat "$T/window.out"
[ $rc -eq 0 ] || fail "raw client (window) failed"

timeout 60 nbdcopy "$NBD_URI" "$T/out.raw" || fail "nbdcopy out failed"
stop_primary || fail "duet-primary exited with $?"
stop_mirror || fail "duet-mirror exited with $?"
cmp "$T/out.raw" "$T/primary.img" ||
    fail "the primary's volume differs from what a client read"
same_images
echo "PASS: $TNAME"
