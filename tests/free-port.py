#!/usr/bin/env python3
"""Prints a TCP port on 127.0.0.1 that is free now, for a test to listen on.

It is taken from below the kernel's ephemeral range: a port the kernel
hands out by itself (bind to port 0, or a connect's own end) is never one
of these, so only another explicit pick can take it before the caller
binds it. Where that range leaves no room, the kernel picks.
"""
import random
import socket

try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    low = 0
FIRST = 10000

for _ in range(1000):
    port = random.randrange(FIRST, low) if low > FIRST + 100 else 0
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(s.getsockname()[1])
        break
else:
    raise SystemExit("free-port: no free TCP port on 127.0.0.1")
