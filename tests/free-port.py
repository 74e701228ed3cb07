#!/usr/bin/env python3
"""free-port.py [FILE]: prints a TCP port on 127.0.0.1 that is free now,
for a test to listen on.

It is taken from below the kernel's ephemeral range: a port the kernel
hands out by itself (bind to port 0, or a connect's own end) is never one
of these, so only another explicit pick can take it before the caller
binds it. With FILE, the ports listed there (one a line: this script's
earlier picks for the same test, perhaps not bound yet) are skipped and
the new one is added. Where the range leaves no room, the kernel picks.
"""
import random
import socket
import sys

try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    low = 0
FIRST = 10000

given = set()
if len(sys.argv) > 1:
    try:
        with open(sys.argv[1]) as f:
            given = {int(line) for line in f if line.strip()}
    except FileNotFoundError:
        pass

for _ in range(1000):
    port = random.randrange(FIRST, low) if low > FIRST + 100 else 0
    if port in given:
        continue
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        port = s.getsockname()[1]
    if port in given:
        continue
    break
else:
    raise SystemExit("free-port: no free TCP port on 127.0.0.1")

if len(sys.argv) > 1:
    with open(sys.argv[1], "a") as f:
        f.write("%d\n" % port)
print(port)
