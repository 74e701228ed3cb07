#!/bin/sh
# 01-proxy: duet-faultproxy itself, in front of a socat echo server on
# loopback, before any fault test trusts it.
#
#  1. pass: 1 MiB of random data comes back intact; status counts it
#  2. delay 200: a round trip takes >= 0.4 s (200 ms each way)
#  3. rate 262144: 256 KiB take >= 0.8 s each way, and arrive intact
#  4. blackhole: nothing comes back and the client's read times out while
#     the connection stays open; its close is held back until pass
#  5. reset: an open client sees its connection reset; the mode is pass
#  6. refuse: an open client is closed, a new one is closed at once;
#     pass lets connections through again
#  7. control: bad commands answer "error: ...", several commands on one
#     connection, bad arguments exit 2 naming the option, SIGTERM exits 0
. "$(dirname "$0")/../integration/lib.sh"

need socat
need timeout
need mkfifo
PROXY=$DUET_BUILD/tests/duet-faultproxy
[ -x "$PROXY" ] || fail "$PROXY is not built (make)"
CTL=$T/proxy.ctl
PROXY_LOG=$T/proxy.log
CLIENT_PID=""

# lib.sh's fail shows the daemons' logs; here the proxy's is the one.
fail() {
	echo "FAIL: $TNAME: $*"
	if [ -s "$PROXY_LOG" ]; then
		echo "--- proxy log (last 30 lines) ---"
		tail -30 "$PROXY_LOG"
	fi
	exit 1
}

now_ms() {
	echo $(($(date +%s%N) / 1000000))
}

# ctl CMD...: one command on the control socket; prints the reply.
ctl() {
	printf '%s\n' "$*" | timeout 5 socat -t 2 - "UNIX-CONNECT:$CTL"
}

# mode CMD...: a command that must answer "ok".
mode() {
	_r=$(ctl "$@")
	[ "$_r" = ok ] || fail "'$*' answered '$_r', want 'ok'"
}

# field NAME: one field of the status line.
field() {
	ctl status | tr ' ' '\n' | sed -n "s/^$1=//p"
}

# open_client NAME [IDLE]: socat connected through the proxy, in the
# background ($CLIENT_PID), exiting after IDLE seconds without traffic
# (default 30). What it sends is written to fd 4 here (a fifo); what it
# gets goes to $T/NAME.out, its warnings (-d: a reset is one) to
# $T/NAME.err. close_client closes fd 4, which is its EOF.
open_client() {
	rm -f "$T/$1.in"
	mkfifo "$T/$1.in" || fail "mkfifo $T/$1.in"
	socat -d -T "${2:-30}" - "TCP:127.0.0.1:$LPORT" <"$T/$1.in" \
	    >"$T/$1.out" 2>"$T/$1.err" &
	CLIENT_PID=$!
	BG_PIDS="$BG_PIDS $CLIENT_PID"
	exec 4>"$T/$1.in"
}

close_client() {
	exec 4>&-
}

# client_gone SECS: true once $CLIENT_PID has exited, within SECS.
client_gone() {
	_n=0
	while _alive "$CLIENT_PID"; do
		_n=$((_n + 1))
		[ $_n -le $(($1 * 10)) ] || return 1
		sleep 0.1
	done
}

# wait_field NAME VALUE: the status field reaches VALUE within 3 s.
wait_field() {
	_n=0
	until [ "$(field "$1")" = "$2" ]; do
		_n=$((_n + 1))
		[ $_n -le 30 ] || return 1
		sleep 0.1
	done
}

# ---- an echo server and the proxy in front of it ----
EPORT=$(free_port)
bg socat -t 5 "TCP-LISTEN:$EPORT,bind=127.0.0.1,reuseaddr,fork" PIPE
ECHO_PID=$LAST_PID
_n=0
until _listening "$EPORT"; do
	_alive "$ECHO_PID" || fail "the socat echo server exited"
	_n=$((_n + 1))
	[ $_n -le 50 ] || fail "the socat echo server is not listening"
	sleep 0.1
done

"$PROXY" -v -l 127.0.0.1:0 -t "127.0.0.1:$EPORT" -c "$CTL" \
    >"$T/proxy.out" 2>"$PROXY_LOG" &
PROXY_PID=$!
BG_PIDS="$BG_PIDS $PROXY_PID"
wait_for "$T/proxy.out" '^listening ' "$PROXY_PID" ||
    fail "no 'listening' line from the proxy: $(show "$T/proxy.out")"
LPORT=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' \
    "$T/proxy.out")
case $LPORT in
'' | 0) fail "bad 'listening' line: $(show "$T/proxy.out")" ;;
esac
[ -S "$CTL" ] || fail "no control socket at $CTL"

# ---- 1. pass ----
head -c 1048576 /dev/urandom >"$T/in.bin"
timeout 30 socat -t 10 - "TCP:127.0.0.1:$LPORT" <"$T/in.bin" \
    >"$T/out.bin" 2>"$T/pass.err" ||
    fail "pass: the client failed: $(show "$T/pass.err")"
cmp "$T/in.bin" "$T/out.bin" ||
    fail "pass: 1 MiB did not come back intact"
st=$(ctl status)
[ "$st" = "mode=pass conns=0 bytes_up=1048576 bytes_down=1048576" ] ||
    fail "pass: status after 1 MiB each way is '$st'"

# ---- 2. delay ----
mode delay 200
[ "$(field mode)" = delay ] || fail "delay: status says mode=$(field mode)"
t0=$(now_ms)
out=$(printf ping | timeout 10 socat -t 5 - "TCP:127.0.0.1:$LPORT") ||
    fail "delay: the client failed"
ms=$(($(now_ms) - t0))
[ "$out" = ping ] || fail "delay: got '$out' back, want 'ping'"
[ "$ms" -ge 400 ] ||
    fail "delay 200: the round trip took $ms ms, want >= 400 (200 each way)"
echo "delay 200: round trip $ms ms"
mode delay 0
[ "$(field mode)" = pass ] || fail "delay 0: status says mode=$(field mode)"

# ---- 3. rate ----
mode rate 262144
head -c 262144 /dev/urandom >"$T/in2.bin"
t0=$(now_ms)
timeout 30 socat -t 10 - "TCP:127.0.0.1:$LPORT" <"$T/in2.bin" \
    >"$T/out2.bin" 2>"$T/rate.err" ||
    fail "rate: the client failed: $(show "$T/rate.err")"
ms=$(($(now_ms) - t0))
cmp "$T/in2.bin" "$T/out2.bin" || fail "rate: 256 KiB did not come back intact"
[ "$ms" -ge 800 ] ||
    fail "rate 262144: 256 KiB each way took $ms ms, want >= 800"
echo "rate 262144: 256 KiB echoed in $ms ms"
mode pass

# ---- 4. blackhole ----
mode blackhole
up0=$(field bytes_up)
open_client bh 1.5
t0=$(now_ms)
printf hello >&4
sleep 0.5
_alive "$CLIENT_PID" ||
    fail "blackhole: the client ended at once (connection closed?): $(show "$T/bh.err")"
[ "$(field conns)" = 1 ] ||
    fail "blackhole: status says conns=$(field conns), want 1 open"
bg_wait "$CLIENT_PID"
ms=$(($(now_ms) - t0))
close_client
[ -s "$T/bh.out" ] && fail "blackhole: got '$(cat "$T/bh.out")' back"
[ "$ms" -ge 1400 ] ||
    fail "blackhole: the client ended after $ms ms, before its 1.5 s read timeout: $(show "$T/bh.err")"
[ "$(field bytes_up)" = "$up0" ] ||
    fail "blackhole: bytes went up ($up0 -> $(field bytes_up))"
[ "$(field conns)" = 1 ] ||
    fail "blackhole: the client's close went through (conns=$(field conns))"
mode pass
wait_field conns 0 ||
    fail "pass after blackhole: the held close did not go through (conns=$(field conns))"

# ---- 5. reset ----
open_client rs
printf hi >&4
wait_for "$T/rs.out" hi "$CLIENT_PID" ||
    fail "reset: no echo before the reset: $(show "$T/rs.err")"
mode reset
client_gone 3 || fail "reset: the client still runs 3 s after the reset"
bg_wait "$CLIENT_PID"
close_client
grep -qi 'reset' "$T/rs.err" ||
    fail "reset: the client did not see a reset: $(show "$T/rs.err")"
st=$(ctl status)
case $st in
"mode=pass conns=0 "*) ;;
*) fail "reset: status afterwards is '$st'" ;;
esac

# ---- 6. refuse ----
open_client rf
printf x >&4
wait_for "$T/rf.out" x "$CLIENT_PID" ||
    fail "refuse: no echo before refuse: $(show "$T/rf.err")"
mode refuse
client_gone 3 || fail "refuse: an open connection was not closed within 3 s"
bg_wait "$CLIENT_PID"
close_client
t0=$(now_ms)
out=$(printf again | timeout 10 socat -t 3 - "TCP:127.0.0.1:$LPORT" 2>/dev/null)
ms=$(($(now_ms) - t0))
[ -z "$out" ] || fail "refuse: a new connection got '$out' back"
[ "$ms" -lt 2000 ] ||
    fail "refuse: a new connection was not closed at once ($ms ms)"
st=$(ctl status)
case $st in
"mode=refuse conns=0 "*) ;;
*) fail "refuse: status is '$st'" ;;
esac
mode pass
out=$(printf again | timeout 10 socat -t 5 - "TCP:127.0.0.1:$LPORT")
[ "$out" = again ] || fail "pass after refuse: got '$out' back"

# ---- 7. control and arguments ----
for c in bogus "delay" "delay abc" "delay 1 2" "rate -5" "pass now" \
    "status x"; do
	r=$(ctl "$c")
	case $r in
	"error: "*) ;;
	*) fail "'$c' answered '$r', want 'error: ...'" ;;
	esac
done
r=$(printf 'delay 50\nstatus\npass\n' |
    timeout 5 socat -t 2 - "UNIX-CONNECT:$CTL" | tr '\n' '|')
case $r in
"ok|mode=delay conns=0 "*"|ok|") ;;
*) fail "three commands on one connection answered '$r'" ;;
esac
[ "$(field mode)" = pass ] || fail "mode is $(field mode) after pass"

for args in "-l nonsense -t 127.0.0.1:1 -c $T/x.sock|-l" \
    "-l 127.0.0.1:0 -t 127.0.0.1:0 -c $T/x.sock|-t" \
    "-l 127.0.0.1:0 -t 127.0.0.1:1|-c"; do
	opt=${args##*|}
	# shellcheck disable=SC2086
	"$PROXY" ${args%|*} >/dev/null 2>"$T/args.err" </dev/null
	rc=$?
	[ $rc -eq 2 ] || fail "'${args%|*}': exit $rc, want 2"
	grep -q -- "$opt" "$T/args.err" ||
	    fail "'${args%|*}': the message does not name $opt: $(show "$T/args.err")"
done

kill -TERM "$PROXY_PID"
bg_wait "$PROXY_PID"
rc=$?
[ $rc -eq 0 ] || fail "the proxy exited $rc on SIGTERM, want 0"
[ -e "$CTL" ] && fail "the control socket is still there after exit"
echo "ok"
exit 0
