#!/bin/sh
# 28-primary-max-clients: primary.max_clients bounds the NBD clients
# connected at once.
#
#  1. With max_clients = 2 and two clients holding their connections, a
#     third (nbdinfo) is closed at once: it fails, and the primary's log
#     names the limit.
#  2. Reloaded with max_clients = 3 (SIGHUP), the log says the key is in
#     effect and nbdinfo succeeds beside the two.
#  3. With one of the two gone, a client connects again under the old limit
#     of 2 after a second reload.
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"
need nbdinfo
need python3

DUETCTL=$DUET_BUILD/duetctl

clients() {
	"$DUETCTL" -s "$PRIMARY_STATUS" status --json |
	    python3 -c 'import json, sys; print(json.load(sys.stdin)["clients"])'
}

# wait_clients N: until the status counts N clients (5 s).
wait_clients() {
	_n=0
	until [ "$(clients)" = "$1" ]; do
		_n=$((_n + 1))
		[ $_n -le 50 ] || fail "status shows $(clients) clients, not $1"
		sleep 0.1
	done
}

# hold: a client that connects, reads the greeting and keeps the socket.
hold() {
	bg python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.recv(18)
time.sleep(60)' "$NBD_SOCK"
}

# set_max N: writes max_clients = N and reloads.
set_max() {
	sed -i "s/^  max_clients = [0-9]*;\$/  max_clients = $1;/" "$T/primary.conf"
	hup "$PRIMARY_PID" "$PRIMARY_LOG"
}

mk_certs
write_conf "$T/mirror.conf"
write_primary_conf "$T/primary.conf" sync
sed -i 's/^  mode = "sync";$/&\n  max_clients = 2;/' "$T/primary.conf"
grep -q '^  max_clients = 2;$' "$T/primary.conf" || fail "config not written"
start_mirror
start_primary
wait_synced 1

# ---- 1.
hold
h1=$LAST_PID
hold
wait_clients 2
if nbdinfo "$NBD_URI" >"$T/info3.out" 2>&1; then
	fail "a third client was served with max_clients = 2: $(show "$T/info3.out")"
fi
grep -q 'NBD: client refused: 2 clients connected, primary.max_clients is 2' \
    "$PRIMARY_LOG" || fail "no refusal in the log: $(show "$PRIMARY_LOG")"
_alive "$PRIMARY_PID" || fail "duet-primary died"
[ "$(clients)" = 2 ] || fail "status shows $(clients) clients after the refusal"
echo "ok   a third client is refused, and the log names primary.max_clients"

# ---- 2.
set_max 3
grep -q 'reload: primary.max_clients changed: in effect now' "$PRIMARY_LOG" ||
    fail "the reload did not apply max_clients: $(show "$PRIMARY_LOG")"
nbdinfo --size "$NBD_URI" >"$T/size.out" 2>&1 ||
    fail "nbdinfo failed with max_clients = 3: $(show "$T/size.out")"
[ "$(cat "$T/size.out")" = 67108864 ] ||
    fail "nbdinfo --size: $(cat "$T/size.out")"
echo "ok   reloaded to 3: a third client is served"

# ---- 3.
set_max 2
kill "$h1"
bg_wait "$h1"
wait_clients 1
nbdinfo --size "$NBD_URI" >"$T/size.out" 2>&1 ||
    fail "nbdinfo failed with 1 of 2 clients connected: $(show "$T/size.out")"
echo "ok   back to 2 with one client gone: a second client is served"
stop_primary || fail "duet-primary did not stop"
echo "PASS: $TNAME"
