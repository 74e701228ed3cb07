#!/usr/bin/env python3
"""bench/qmp.py: the little QMP that bench/e2e.sh needs (standard library only).

  qmp.py SOCK mirror JOB TARGET_JSON TIMEOUT_S
      blockdev-add TARGET_JSON (the NBD client node, node-name "tgt"), then
      blockdev-mirror device=prim target=tgt sync=full
      copy-mode=write-blocking, job-id JOB; then wait until the job is READY
      (BLOCK_JOB_READY event, or ready=true in query-block-jobs, polled
      every 0.2 s in case the event is missed). Prints the seconds from the
      blockdev-mirror to READY.
  qmp.py SOCK finish JOB TIMEOUT_S
      block-job-cancel force=false on the READY job: a READY mirror then
      completes (BLOCK_JOB_COMPLETED, the target left in sync; it does not
      pivot to it, as block-job-complete would), then blockdev-del "tgt"
      (which flushes the NBD target and disconnects). Prints the seconds.
  qmp.py SOCK quit
      "quit"; the daemon closing the connection is not an error.
  qmp.py SOCK cmd COMMAND [JSON_ARGS]
      one command; prints its "return" as JSON.

Exit status 0, or 1 with a message on stderr (a QMP error, a job that fails,
is cancelled or is not READY in time).
"""
import json
import socket
import sys
import time


class Error(Exception):
    pass


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)
        self.buf = b""
        self.events = []
        self.serial = 0
        hello = self.read(time.monotonic() + 30)
        if "QMP" not in hello:
            raise Error("not a QMP greeting: %r" % hello)
        self.call("qmp_capabilities")

    def read(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Error("timed out waiting for QMP")
            self.s.settimeout(left)
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                raise Error("timed out waiting for QMP") from None
            if not data:
                raise Error("QMP connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line) if line.strip() else self.read(deadline)

    def call(self, cmd, args=None, timeout=60):
        self.serial += 1
        msg = {"execute": cmd, "id": self.serial}
        if args is not None:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            m = self.read(deadline)
            if "event" in m:
                self.events.append(m)
            elif m.get("id") == self.serial:
                if "error" in m:
                    raise Error("%s: %s" % (cmd, m["error"].get("desc", m["error"])))
                return m.get("return")

    def event(self, names, job, deadline):
        """The first event in NAMES about JOB, or None once DEADLINE passes."""
        while True:
            for i, e in enumerate(self.events):
                if e["event"] in names and e.get("data", {}).get("device") == job:
                    return self.events.pop(i)
            if time.monotonic() >= deadline:
                return None
            try:
                m = self.read(deadline)
            except Error as e:
                if "timed out" in str(e):
                    return None
                raise
            if "event" in m:
                self.events.append(m)


FAILED = ("BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR")


def job_state(q, job):
    for j in q.call("query-block-jobs"):
        if j.get("device") == job:
            return j
    return None


def mirror(q, job, target, timeout):
    q.call("blockdev-add", target)
    t0 = time.monotonic()
    q.call("blockdev-mirror", {"job-id": job, "device": "prim", "target": "tgt",
                               "sync": "full", "copy-mode": "write-blocking"})
    end = t0 + timeout
    while True:
        e = q.event(("BLOCK_JOB_READY",) + FAILED + ("BLOCK_JOB_COMPLETED",), job,
                    min(end, time.monotonic() + 0.2))
        if e is not None and e["event"] != "BLOCK_JOB_READY":
            raise Error("mirror job %s: %s %s" % (job, e["event"], json.dumps(e["data"])))
        j = job_state(q, job)
        if j is None:
            raise Error("mirror job %s is gone before READY" % job)
        if j.get("error"):
            raise Error("mirror job %s: %s" % (job, j["error"]))
        if e is not None or j.get("ready"):
            return time.monotonic() - t0
        if time.monotonic() >= end:
            raise Error("mirror job %s not READY after %g s: %d of %d bytes"
                        % (job, timeout, j.get("offset", 0), j.get("len", 0)))


def finish(q, job, timeout):
    j = job_state(q, job)
    if j is None:
        raise Error("mirror job %s is gone" % job)
    if not j.get("ready"):
        raise Error("mirror job %s is not READY: %s" % (job, json.dumps(j)))
    t0 = time.monotonic()
    q.call("block-job-cancel", {"device": job, "force": False})
    e = q.event(("BLOCK_JOB_COMPLETED",) + FAILED, job, t0 + timeout)
    if e is None:
        raise Error("mirror job %s did not complete in %g s" % (job, timeout))
    if e["event"] != "BLOCK_JOB_COMPLETED" or e["data"].get("error"):
        raise Error("mirror job %s: %s %s" % (job, e["event"], json.dumps(e["data"])))
    q.call("blockdev-del", {"node-name": "tgt"})
    return time.monotonic() - t0


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    sock, sub, rest = argv[1], argv[2], argv[3:]
    try:
        q = Qmp(sock)
        if sub == "mirror" and len(rest) == 3:
            print("%.3f" % mirror(q, rest[0], json.loads(rest[1]), float(rest[2])))
        elif sub == "finish" and len(rest) == 2:
            print("%.3f" % finish(q, rest[0], float(rest[1])))
        elif sub == "quit" and not rest:
            try:
                q.call("quit", timeout=10)
            except (Error, OSError):
                pass
        elif sub == "cmd" and len(rest) in (1, 2):
            args = json.loads(rest[1]) if len(rest) == 2 else None
            print(json.dumps(q.call(rest[0], args)))
        else:
            sys.stderr.write(__doc__)
            return 2
    except (Error, OSError, ValueError) as e:
        sys.stderr.write("qmp.py: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
