#!/bin/sh
# 11-mirror-hostile: a bad peer costs the mirror that one connection, with
# a logged reason, and nothing else (DESIGN.md "Wire protocol").
#
#  1. An honest primary streams in the background. Meanwhile, pre-hello
#     misbehaviour on other connections: garbage bytes (bad magic), a hello
#     with version 99, half a hello header then silence (closed after
#     mirror.hello_timeout, 3 s here, which the log names), a
#     client certificate from a rogue CA, a certificate from the right CA
#     for the wrong name ("intruder"), and a second honest primary
#     (refused: one session at a time). Each is closed, each gets a log
#     line naming its address and the reason, and the honest run finishes
#     with every op acked and the volume equal to its model.
#  2. One after another (one primary session at a time), post-hello
#     misbehaviour: a 1 GiB WRITE header, a WRITE at offset = volume size, a
#     misaligned WRITE, a repeated seq, a frontier not below its seq. Each
#     is closed with a logged reason, frees the session for the next, and
#     applies nothing it should not (noseq's first, valid WRITE of 4 KiB of
#     0xa5 at 0 is applied; the repeated one at 4096 and the bad-frontier
#     one at 8192 are not). Last, a hello and then silence: closed after
#     mirror.idle_timeout (4 s here), which the log names.
#  3. A last honest run: the mirror still serves and still matches.
#  4. Restarted with primary.max_inflight_bytes = 1M and every write on
#     its workers (mirror.inline_us = 0): a 4 MiB WRITE and a GOODBYE in
#     one burst. Reading pauses after the WRITE; the GOODBYE, already read,
#     is taken up when the WRITE is applied, which ends the session. The
#     WRITE is on the volume and the mirror stops cleanly (under
#     AddressSanitizer this once showed a freed session being read).
. "$(dirname "$0")/lib.sh"

U=c0ffee00111122223333444455556666
OPS=${DUET_IT_HOSTILE_OPS:-8000}

mk_certs
sh "$TOP/tests/certs.sh" "$T/certs" intruder || fail "certs.sh intruder"
sh "$TOP/tests/certs.sh" "$T/rogue" --rogue primary || fail "certs.sh --rogue"
write_conf "$T/mirror.conf"
# (below the default primary.ping_interval of 5 s, which must be lower)
sed -i 's/^  listen = "127.0.0.1:[0-9]*";$/&\n  idle_timeout = 4;\n  hello_timeout = 3;/' \
    "$T/mirror.conf"
echo 'primary = { ping_interval = 1; };' >>"$T/mirror.conf"
grep -q '^  hello_timeout = 3;$' "$T/mirror.conf" ||
    fail "cannot set mirror.idle_timeout and hello_timeout in $T/mirror.conf"
start_mirror

# check_closed NAME RC OUT REGEX: a hostile peer's result and the log line.
check_closed() {
	[ "$2" -eq 0 ] ||
	    fail "hostile $1: duet-testpeer exited $2: $(show "$3")"
	_addr=$(local_addr "$3")
	[ -n "$_addr" ] || fail "hostile $1: no local address in its output"
	_line=$(log_wait "$_addr" "$4") ||
	    fail "hostile $1 from $_addr: no mirror log line naming it and" \
	    "matching /$4/; lines about it: $(log_for "$_addr")"
	echo "ok   $1:"
	grep -v '^local ' "$3" | sed 's/^/     peer: /'
	echo "     log: $(echo "$_line" | head -1)"
}

# check_tls_refused NAME RC OUT: a client with a bad certificate.
check_tls_refused() {
	[ "$2" -eq 1 ] ||
	    fail "$1: duet-testpeer exited $2, expected 1 (a TLS failure;" \
	    "3 would mean the hello got through): $(show "$3")"
	grep -q '^refused' "$3" && fail "$1: got as far as a hello: $(show "$3")"
	_addr=$(local_addr "$3")
	[ -n "$_addr" ] || fail "$1: no local address in its output"
	_line=$(log_wait "$_addr" 'certificate|verify|unknown ca|handshake') ||
	    fail "$1 from $_addr: no mirror log line naming it and the" \
	    "certificate problem; lines about it: $(log_for "$_addr")"
	echo "ok   $1: $(grep -v '^local ' "$3" | tail -1)"
	echo "     log: $(echo "$_line" | head -1)"
}

echo "--- honest run ($OPS ops) with pre-hello hostility alongside"
bg peer -v --uuid "$U" --seed 4242 --ops "$OPS" --image "$T/model1.img" \
    >"$T/honest.out" 2>&1
honest=$LAST_PID
wait_for "$T/honest.out" 'hello accepted' "$honest" ||
    fail "honest peer: no hello accepted: $(show "$T/honest.out")"

# One primary session at a time: a second honest primary is turned away.
peer --uuid "$U" --ops 0 --expect-refusal "another primary" \
    >"$T/busy.out" 2>&1 ||
    fail "a second primary during the honest run was not refused as busy:" \
    "$(show "$T/busy.out")"
echo "ok   second primary: $(grep '^refused' "$T/busy.out")"

bg peer --uuid "$U" --hostile half --timeout 25 >"$T/half.out" 2>&1
p_half=$LAST_PID
bg peer --uuid "$U" --hostile garbage --timeout 15 >"$T/garbage.out" 2>&1
p_garbage=$LAST_PID
bg peer --uuid "$U" --hostile badversion --timeout 15 >"$T/badversion.out" 2>&1
p_badversion=$LAST_PID
bg "$TESTPEER" --connect "127.0.0.1:$PORT" --ca "$T/certs/ca.pem" \
    --cert "$T/rogue/primary.pem" --key "$T/rogue/primary.key" \
    --peer-name mirror --size "$SIZE" --uuid "$U" --ops 0 --timeout 15 \
    >"$T/rogue.out" 2>&1
p_rogue=$LAST_PID
bg "$TESTPEER" --connect "127.0.0.1:$PORT" --ca "$T/certs/ca.pem" \
    --cert "$T/certs/intruder.pem" --key "$T/certs/intruder.key" \
    --peer-name mirror --size "$SIZE" --uuid "$U" --ops 0 --timeout 15 \
    >"$T/intruder.out" 2>&1
p_intruder=$LAST_PID

bg_wait $p_garbage; check_closed garbage $? "$T/garbage.out" 'magic'
bg_wait $p_badversion; check_closed badversion $? "$T/badversion.out" 'version'
bg_wait $p_rogue; check_tls_refused "rogue CA" $? "$T/rogue.out"
bg_wait $p_intruder; check_tls_refused "wrong name" $? "$T/intruder.out"
if _alive "$honest"; then
	echo "     (the honest run was still streaming through all of the above)"
else
	echo "     (note: the honest run had already finished)"
fi
bg_wait $p_half
check_closed half $? "$T/half.out" 'no hello within 3 s \(mirror.hello_timeout\)'

bg_wait $honest
rc=$?
[ $rc -eq 0 ] || fail "honest run exited $rc: $(show "$T/honest.out")"
grep '^ok' "$T/honest.out"
cmp "$T/mirror.img" "$T/model1.img" ||
    fail "after the honest run: the mirror's volume differs from the model"

echo "--- post-hello hostility, one session at a time"
peer --uuid "$U" --hostile oversized --timeout 15 >"$T/oversized.out" 2>&1
check_closed oversized $? "$T/oversized.out" 'maximum|too big|too large'
peer --uuid "$U" --hostile offset --timeout 15 >"$T/offset.out" 2>&1
check_closed offset $? "$T/offset.out" 'beyond|out of range'
peer --uuid "$U" --hostile misaligned --timeout 15 >"$T/misaligned.out" 2>&1
check_closed misaligned $? "$T/misaligned.out" 'align'
cmp "$T/mirror.img" "$T/model1.img" ||
    fail "oversized/offset/misaligned frames changed the volume"
peer --uuid "$U" --hostile noseq --timeout 15 >"$T/noseq.out" 2>&1
check_closed noseq $? "$T/noseq.out" 'seq'
peer --uuid "$U" --hostile frontier --timeout 15 >"$T/frontier.out" 2>&1
check_closed frontier $? "$T/frontier.out" 'frontier'
peer --uuid "$U" --hostile silent --timeout 15 >"$T/silent.out" 2>&1
check_closed silent $? "$T/silent.out" 'no frame for 4 s'

# Expected now: model1 with 4 KiB of 0xa5 at offset 0, nothing at 4096
# (noseq's repeated seq) or 8192 (the bad frontier).
cp "$T/model1.img" "$T/model2.img"
head -c 4096 /dev/zero | tr '\000' '\245' |
    dd of="$T/model2.img" bs=4096 count=1 conv=notrunc 2>/dev/null ||
    fail "dd"
cmp "$T/mirror.img" "$T/model2.img" ||
    fail "noseq/frontier: the volume is not model + noseq's first WRITE" \
    "only (was a refused WRITE applied, or the valid one lost?)"

echo "--- a last honest run"
peer --uuid "$U" --seed 99 --ops 300 --base "$T/model2.img" \
    --image "$T/model3.img" >"$T/last.out" 2>&1 ||
    fail "last honest run exited $?: $(show "$T/last.out")"
grep '^ok' "$T/last.out"
cmp "$T/mirror.img" "$T/model3.img" ||
    fail "last honest run: the mirror's volume differs from the model"

echo "--- a GOODBYE read while reading is paused"
stop_mirror || fail "duet-mirror exited $? on SIGTERM, expected 0"
sed -i -e 's/^primary = { ping_interval = 1; };$/primary = { ping_interval = 1; max_inflight_bytes = "1M"; };/' \
    -e 's/^  hello_timeout = 3;$/&\n  inline_us = 0;/' "$T/mirror.conf"
grep -q 'max_inflight_bytes = "1M"' "$T/mirror.conf" && grep -q '^  inline_us = 0;$' "$T/mirror.conf" ||
    fail "cannot set primary.max_inflight_bytes and mirror.inline_us in $T/mirror.conf"
start_mirror
peer --uuid "$U" --hostile byepaused --timeout 15 >"$T/byepaused.out" 2>&1
check_closed byepaused $? "$T/byepaused.out" 'goodbye'
head -c 4194304 /dev/zero | tr '\000' '\245' >"$T/a5.img"
cmp -n 4194304 "$T/mirror.img" "$T/a5.img" ||
    fail "byepaused: its 4 MiB WRITE is not on the volume"
stop_mirror
rc=$?
[ $rc -eq 0 ] || fail "duet-mirror exited $rc on SIGTERM, expected 0:" \
    "$(grep -m1 -A5 'ERROR: AddressSanitizer' "$MIRROR_LOG" || tail -5 "$MIRROR_LOG")"
echo "PASS: $TNAME"
