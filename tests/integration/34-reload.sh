#!/bin/sh
# 34-reload: SIGHUP (systemctl reload) applies the keys that may change
# under a running daemon and leaves the others for a restart.
#
#  1. The mirror: a peer says hello, then nothing. mirror.idle_timeout goes
#     from its default 30 s to 2 s by reload (with task_groups changed too):
#     the log says idle_timeout is in effect and task_groups waits for a
#     restart, and the silent session is closed ("no frame for 2 s") well
#     before the old 30 s.
#  2. A broken file on reload is logged, and the daemon keeps running with
#     what it had.
#  3. The primary, in sync with a new mirror and idle, reloads primary.ping_interval 1 and
#     idle_timeout 3 (from 5 and 15): the log says both are in effect, and
#     over 8 idle seconds the link stays up (no reconnect): the ping timer,
#     armed for 5 s, was re-armed, or the new 3 s limit would have ended
#     the link.
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"
need python3

U=c0ffee00111122223333444455556666
DUETCTL=$DUET_BUILD/duetctl

# stat SOCK EXPR: EXPR (Python, on the status JSON as s) from SOCK.
stat() {
	"$DUETCTL" -s "$1" status --json |
	    python3 -c 'import json, sys
s = json.load(sys.stdin)
print(eval(sys.argv[1]))' "$2"
}
pstat() { stat "$PRIMARY_STATUS" "$1"; }

mk_certs
write_conf "$T/mirror.conf"
start_mirror

# ---- 1. the mirror's idle timeout, live
bg peer --uuid "$U" --hostile silent --timeout 20 >"$T/silent.out" 2>&1
p_silent=$LAST_PID
_n=0
until [ "$(stat "$MIRROR_STATUS" 's["connection"]["state"]')" = connected ]; do
	_n=$((_n + 1))
	[ $_n -le 50 ] || fail "the silent peer's session did not start: $(show "$T/silent.out")"
	sleep 0.1
done
sed -i -e 's/^  listen = "127.0.0.1:[0-9]*";$/&\n  idle_timeout = 2;/' \
    -e 's/^  task_groups = 4;$/  task_groups = 2;/' "$T/mirror.conf"
# mirror.idle_timeout must exceed the primary's ping interval (default 5)
echo 'primary = { ping_interval = 1; };' >>"$T/mirror.conf"
grep -q '^  idle_timeout = 2;$' "$T/mirror.conf" &&
    grep -q '^  task_groups = 2;$' "$T/mirror.conf" ||
    fail "cannot edit $T/mirror.conf"
hup "$MIRROR_PID" "$MIRROR_LOG"
grep -q 'reload: mirror.idle_timeout changed: in effect now' "$MIRROR_LOG" ||
    fail "the mirror's log does not say idle_timeout is in effect"
grep -q 'reload: mirror.task_groups changed: takes effect after a restart' "$MIRROR_LOG" ||
    fail "the mirror's log does not say task_groups waits for a restart"
bg_wait $p_silent
rc=$?
[ $rc -eq 0 ] || fail "the silent peer exited $rc: $(show "$T/silent.out")"
grep -q 'no frame for 2 s' "$MIRROR_LOG" ||
    fail "the silent session was not closed after the new 2 s"
echo "ok   mirror: $(grep -o 'hostile silent: .*' "$T/silent.out")"

# ---- 2. a broken file changes nothing
cp "$T/mirror.conf" "$T/mirror.conf.good"
echo 'mirror = { task_groups = 0; };' >>"$T/mirror.conf"
hup "$MIRROR_PID" "$MIRROR_LOG"
grep -q 'keeping the running configuration' "$MIRROR_LOG" ||
    fail "a broken file on reload: no 'keeping the running configuration'"
_alive "$MIRROR_PID" || fail "duet-mirror died on a broken reload"
cp "$T/mirror.conf.good" "$T/mirror.conf"
echo "ok   broken file: $(grep -o 'reload: .*keeping the running configuration' "$MIRROR_LOG")"

# ---- 3. the primary's timers, live, on an idle link (a new mirror volume:
# the test peer's is another volume)
stop_mirror || fail "duet-mirror exited with $?"
rm -f "$T/mirror.img" "$T/mirror.meta"
write_conf "$T/mirror.conf"	# idle_timeout 30 again: the primary pings every 5 s
start_mirror
write_primary_conf "$T/primary.conf" sync
start_primary
wait_synced
r0=$(pstat 's["counters"]["reconnects"]')
sed -i 's/^  mode = "sync";$/&\n  ping_interval = 1;\n  idle_timeout = 3;/' \
    "$T/primary.conf"
grep -q '^  idle_timeout = 3;$' "$T/primary.conf" ||
    fail "cannot edit $T/primary.conf"
hup "$PRIMARY_PID" "$PRIMARY_LOG"
for k in ping_interval idle_timeout; do
	grep -q "reload: primary.$k changed: in effect now" "$PRIMARY_LOG" ||
	    fail "the primary's log does not say $k is in effect"
done
sleep 8
[ "$(pstat 's["connection"]["state"]')" = connected ] ||
    fail "the link is $(pstat 's["connection"]["state"]') 8 s after the reload"
[ "$(pstat 's["counters"]["reconnects"]')" = "$r0" ] ||
    fail "the idle link was dropped after the reload: $(grep 'nothing from the mirror' "$PRIMARY_LOG")"
echo "ok   primary: ping_interval 1 and idle_timeout 3 in effect; the idle link stayed up 8 s"
stop_primary || fail "duet-primary exited with $?"
stop_mirror || fail "duet-mirror exited with $?"
echo "PASS: $TNAME"
