#!/usr/bin/env python3
"""check_status.py: checks one "status" reply (stdin) against the schema
in duetctl(8): every field present, with its type and range. Optional
expectations: --role R, --state S (connection.state), --disk D,
--resync running|idle. Prints each problem; exit 0 (good) or 1.
Used by the integration tests in every state they can produce."""
import argparse
import json
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--role")
ap.add_argument("--state")
ap.add_argument("--disk")
ap.add_argument("--resync", choices=["running", "idle"])
opt = ap.parse_args()

problems = []
text = sys.stdin.read()
if text.count("\n") != 1 or not text.endswith("\n"):
    problems.append("not exactly one line")
try:
    st = json.loads(text)
except ValueError as e:
    print("not JSON: %s: %r" % (e, text[:200]))
    sys.exit(1)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return (isinstance(v, (int, float))) and not isinstance(v, bool)


INT = ("integer", is_int)
UINT = ("integer >= 0", lambda v: is_int(v) and v >= 0)
UINT_OR_NULL = ("integer >= 0 or null", lambda v: v is None or (is_int(v) and v >= 0))
NUM_OR_NULL = ("number or null", lambda v: v is None or is_num(v))
STR = ("string", lambda v: isinstance(v, str))
STR_OR_NULL = ("string or null", lambda v: v is None or isinstance(v, str))
BOOL = ("boolean", lambda v: isinstance(v, bool))


def one_of(*vals):
    return ("one of " + ", ".join(vals), lambda v: v in vals)


SCHEMA = {
    "ok": ("true", lambda v: v is True),
    "volume": STR,
    "role": one_of("primary", "mirror"),
    "mode": one_of("sync", "memsync", "async"),
    "connection": {
        "state": one_of("connected", "connecting", "disconnected", "listening"),
        "peer": STR_OR_NULL,
        "since": UINT,
    },
    "disk": one_of("up-to-date", "outdated", "inconsistent", "failed"),
    "out_of_sync_bytes": UINT_OR_NULL,
    "resync": {
        "running": BOOL,
        "progress": ("0..1 or null",
                     lambda v: v is None or (is_num(v) and 0 <= v <= 1)),
        "rate_bytes_per_s": NUM_OR_NULL,
        "eta_s": UINT_OR_NULL,
    },
    "inflight": {"ops": UINT, "bytes": UINT},
    "counters": {k: UINT for k in (
        "reads", "writes", "flushes", "trims", "zeroes", "bytes_read",
        "bytes_written", "errors", "reconnects")},
    "last_error": STR_OR_NULL,
    "uptime_s": UINT,
    "version": {"duet": STR, "protocol": UINT},
}


def check(obj, schema, where):
    if not isinstance(obj, dict):
        problems.append("%s: not an object" % where)
        return
    for key, want in schema.items():
        name = where + key
        if key not in obj:
            problems.append("%s: missing" % name)
        elif isinstance(want, dict):
            check(obj[key], want, name + ".")
        elif not want[1](obj[key]):
            problems.append("%s: %r is not %s" % (name, obj[key], want[0]))


check(st, SCHEMA, "")
groups = st.get("groups")
if not isinstance(groups, list) or not groups:
    problems.append("groups: not a non-empty array")
else:
    for i, g in enumerate(groups):
        check(g, {"main": UINT, "table": UINT}, "groups[%d]." % i)
if st.get("role") == "primary" and not is_int(st.get("clients")):
    problems.append("clients: missing or not an integer (primary)")

for what, path, want in (("role", ("role",), opt.role),
                         ("state", ("connection", "state"), opt.state),
                         ("disk", ("disk",), opt.disk)):
    if want is None:
        continue
    v = st
    for p in path:
        v = v.get(p) if isinstance(v, dict) else None
    if v != want:
        problems.append("%s is %r, expected %r" % (".".join(path), v, want))
if opt.resync is not None:
    running = (st.get("resync") or {}).get("running")
    if running != (opt.resync == "running"):
        problems.append("resync.running is %r, expected %s" %
                        (running, opt.resync))

for p in problems:
    print("status schema: " + p)
sys.exit(1 if problems else 0)
