#!/bin/sh
# 14-mirror-tls: the mirror's TLS gate (TLS 1.3, mutual authentication,
# the client certificate chained to tls.ca and carrying tls.peer_name).
# Every refused client is closed, and the mirror logs a line naming the
# client's address and the reason (STYLE.md: "On error, drain and log the
# OpenSSL error queue"); afterwards the mirror still serves an honest run.
#
# Refused: a certificate from a rogue CA, the right CA but the wrong name,
# no client certificate, TLS 1.2 only, no TLS at all (plaintext). And a
# client that expects another name for the mirror gives up on its own.
#
# All cases run and are reported before the verdict.
. "$(dirname "$0")/lib.sh"

U=7157715771577157aaaabbbbccccdddd
problems=""

mk_certs
sh "$TOP/tests/certs.sh" "$T/certs" intruder || fail "certs.sh intruder"
sh "$TOP/tests/certs.sh" "$T/rogue" --rogue primary || fail "certs.sh --rogue"
write_conf "$T/mirror.conf"
start_mirror

problem() {
	echo "BAD  $*"
	problems="$problems
  - $*"
}

# tls_bad NAME REGEX ARGS...: duet-testpeer with ARGS must fail its TLS
# (exit 1, never as far as a hello), and the mirror must log a line about
# its address matching REGEX.
tls_bad() {
	_name=$1 _re=$2
	shift 2
	"$TESTPEER" --connect "127.0.0.1:$PORT" --size "$SIZE" --uuid "$U" \
	    --ops 0 --timeout 10 "$@" >"$T/tls.out" 2>&1
	_rc=$?
	_addr=$(local_addr "$T/tls.out")
	if [ $_rc -ne 1 ] || grep -q '^refused' "$T/tls.out"; then
		problem "$_name: duet-testpeer exited $_rc, expected 1 (a TLS" \
		    "failure): $(grep -v '^local' "$T/tls.out")"
		return
	fi
	if ! _line=$(log_wait "$_addr" "$_re"); then
		problem "$_name: the mirror logged no reason matching /$_re/ for" \
		    "$_addr (lines about it: $(log_for "$_addr" | tr '\n' ' '))"
		return
	fi
	echo "ok   $_name"
	echo "     peer: $(grep -v '^local' "$T/tls.out" | head -1)"
	echo "     log:  $(echo "$_line" | head -1)"
}

C=$T/certs
tls_bad "rogue CA" 'certificate|unknown ca|verify' \
    --ca "$C/ca.pem" --cert "$T/rogue/primary.pem" \
    --key "$T/rogue/primary.key" --peer-name mirror
tls_bad "wrong name" 'certificate|hostname|name' \
    --ca "$C/ca.pem" --cert "$C/intruder.pem" --key "$C/intruder.key" \
    --peer-name mirror
tls_bad "no client certificate" 'certificate' \
    --ca "$C/ca.pem" --no-cert --peer-name mirror
tls_bad "TLS 1.2" 'protocol|version' \
    --ca "$C/ca.pem" --cert "$C/primary.pem" --key "$C/primary.key" \
    --peer-name mirror --tls12

# No TLS at all.
peer --hostile plaintext --timeout 15 >"$T/plain.out" 2>&1
rc=$?
addr=$(local_addr "$T/plain.out")
if [ $rc -ne 0 ]; then
	problem "plaintext: duet-testpeer exited $rc: $(grep -v '^local' "$T/plain.out")"
elif ! line=$(log_wait "$addr" 'http|version|record|handshake|tls|ssl'); then
	problem "plaintext: the mirror logged no reason for $addr (lines" \
	    "about it: $(log_for "$addr" | tr '\n' ' '))"
else
	echo "ok   plaintext"
	echo "     peer: $(grep -v '^local' "$T/plain.out" | head -1)"
	echo "     log:  $line"
fi

# The client checks the mirror too: the mirror's certificate says
# "mirror", this client wants "elsewhere".
"$TESTPEER" --connect "127.0.0.1:$PORT" --size "$SIZE" --uuid "$U" \
    --ops 0 --timeout 10 --ca "$C/ca.pem" --cert "$C/primary.pem" \
    --key "$C/primary.key" --peer-name elsewhere >"$T/name.out" 2>&1
rc=$?
if [ $rc -ne 1 ] || ! grep -qi 'certificate\|hostname' "$T/name.out"; then
	problem "client expecting another mirror name: exit $rc:" \
	    "$(grep -v '^local' "$T/name.out")"
else
	echo "ok   client refuses the mirror's name"
	echo "     peer: $(grep -v '^local' "$T/name.out" | head -1)"
fi

# Still serving.
peer --uuid "$U" --seed 14 --ops 300 --image "$T/model.img" \
    >"$T/honest.out" 2>&1 ||
    fail "honest run after the TLS refusals: $(show "$T/honest.out")"
grep '^ok' "$T/honest.out"
cmp "$T/mirror.img" "$T/model.img" ||
    fail "honest run: the mirror's volume differs from the model"
stop_mirror
rc=$?
[ $rc -eq 0 ] || fail "duet-mirror exited $rc on SIGTERM, expected 0"
[ -z "$problems" ] || fail "TLS refusals:$problems"
echo "PASS: $TNAME"
