#!/usr/bin/env python3
"""fakestatus.py SOCKET REPLY_FILE: a stand-in status socket for duetctl's
tests, for states a real pair cannot be put in on demand. "status" gets
REPLY_FILE's contents as they are at that moment (so the test changes the
state by rewriting it): JSON text is sent as one line; "!close" closes
without a reply; "!hang" never answers. Any other verb gets
{"ok":true,"verb":...,"args":...}, except "fail": an ok:false reply.
Runs until killed; removes the socket on SIGTERM."""
import json
import os
import signal
import socket
import sys
import threading

path, reply_file = sys.argv[1], sys.argv[2]


def serve(c):
    buf = b""
    with c:
        while True:
            d = c.recv(4096)
            if not d:
                return
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                words = line.decode("utf-8", "replace").split(None, 1)
                if not words:
                    continue
                verb = words[0]
                args = words[1] if len(words) > 1 else ""
                if verb == "status":
                    with open(reply_file) as f:
                        text = f.read().strip()
                    if text == "!close":
                        return
                    if text == "!hang":
                        threading.Event().wait()
                    out = text
                elif verb == "fail":
                    out = json.dumps({"ok": False, "error": {
                        "code": "not-permitted", "message": "no, not now"}})
                else:
                    out = json.dumps({"ok": True, "verb": verb, "args": args})
                c.sendall(out.replace("\n", " ").encode() + b"\n")


def stop(*_):
    try:
        os.unlink(path)
    finally:
        os._exit(0)


signal.signal(signal.SIGTERM, stop)
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
