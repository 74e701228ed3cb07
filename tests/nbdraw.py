"""nbdraw: the pieces of a raw NBD client that tests drive by hand, to send
what a well-behaved client library would not (bad requests, pipelines the
server must answer in a given way). Simple replies only."""
import socket
import struct

NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454f5054
REPMAGIC = 0x0003e889045565a9
REQMAGIC = 0x25609513
SREPMAGIC = 0x67446698
NBD_OPT_EXPORT_NAME = 1
READ, WRITE, DISC, FLUSH, TRIM = 0, 1, 2, 3, 4


def recvn(s, n):
    """Exactly n bytes from s; EOFError if it closes first."""
    b = bytearray()
    while len(b) < n:
        c = s.recv(min(n - len(b), 1 << 20))
        if not c:
            raise EOFError("EOF after %d of %d bytes" % (len(b), n))
        b += c
    return bytes(b)


def export_name(s, name=b"vol0"):
    """Fixed newstyle handshake with NBD_OPT_EXPORT_NAME (no block sizes
    asked for); returns the export size."""
    magic, opt, hflags = struct.unpack(">QQH", recvn(s, 18))
    assert magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting"
    assert hflags & 1, "server is not fixed newstyle"
    s.sendall(struct.pack(">I", 1 | 2))	# FIXED_NEWSTYLE | NO_ZEROES
    s.sendall(struct.pack(">QII", IHAVEOPT, NBD_OPT_EXPORT_NAME, len(name)) +
              name)
    size, _ = struct.unpack(">QH", recvn(s, 10))
    return size


def request(s, cmd, handle, off, length, flags=0, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQMAGIC, flags, cmd, handle, off,
                          length) + payload)


def reply(s):
    """A simple reply's (error, handle)."""
    magic, err, h = struct.unpack(">IIQ", recvn(s, 16))
    assert magic == SREPMAGIC, "bad reply magic %x" % magic
    return err, h
