#!/bin/sh
# 10-mirror-stream: duet-mirror applies an honest primary's stream exactly.
#
# duet-testpeer plays the primary: seeded random WRITE / WRITE_ZEROES /
# TRIM / FLUSH (FUA now and then, overlapping, some across 1 MiB range
# boundaries), 256 in flight, every ack checked; it keeps a model image of
# the ops applied one by one in sequence order, and the mirror's volume file
# must equal it byte for byte (DESIGN.md invariant 4).
#
# Every run also sends a PING now and then and wants its PONG.
#
#  1. sync run (uuid U1 adopted on first connect)         -> volume == model
#  2. memsync run (RECEIVED then APPLIED acks), same U1,
#     starting from run 1's image                         -> volume == model
#  3. frontier = seq - 1 on every op (the frontier gate must release them
#     one after another)                                  -> volume == model
#  4. memsync, 4 MiB frames (more in flight than the mirror queues, so it
#     pauses reading), random frontiers                   -> volume == model
#  5. another uuid is refused ("uuid"), a wrong volume size ("size") or
#     extent size ("extent") too, and none of them touches the volume
#  6. SIGTERM -> exit 0; restart: the uuid survived (U2 still refused, U1
#     accepted), the volume too
. "$(dirname "$0")/lib.sh"

U1=5eed0001aaaabbbbccccddddeeeeffff
U2=0badbadbadbadbadbadbadbadbadbad2
OPS=${DUET_IT_OPS:-3000}

mk_certs
write_conf "$T/mirror.conf"
start_mirror

echo "--- run 1: sync, $OPS ops"
peer --uuid "$U1" --mode sync --seed 101 --ops "$OPS" \
    --image "$T/model1.img" >"$T/run1.out" 2>&1 ||
    fail "sync run: duet-testpeer exited $?: $(show "$T/run1.out")"
cat "$T/run1.out"
cmp "$T/mirror.img" "$T/model1.img" ||
    fail "sync run: the mirror's volume differs from the model"

echo "--- run 2: memsync, $OPS ops"
peer --uuid "$U1" --mode memsync --seed 202 --ops "$OPS" \
    --base "$T/model1.img" --image "$T/model2.img" >"$T/run2.out" 2>&1 ||
    fail "memsync run: duet-testpeer exited $?: $(show "$T/run2.out")"
cat "$T/run2.out"
cmp -s "$T/model1.img" "$T/model2.img" &&
    fail "memsync run changed nothing in the model (test is broken)"
cmp "$T/mirror.img" "$T/model2.img" ||
    fail "memsync run: the mirror's volume differs from the model"

echo "--- run 3: frontier = seq - 1 (the mirror must apply in order)"
peer --uuid "$U1" --mode sync --seed 303 --ops 1500 --frontier max \
    --base "$T/model2.img" --image "$T/model3.img" >"$T/run3.out" 2>&1 ||
    fail "frontier max run: duet-testpeer exited $?: $(show "$T/run3.out")"
cat "$T/run3.out"
cmp "$T/mirror.img" "$T/model3.img" ||
    fail "frontier max run: the mirror's volume differs from the model"

echo "--- run 4: 4 MiB frames, random frontiers (the mirror pauses reading)"
peer --uuid "$U1" --mode memsync --seed 404 --ops 250 --frontier random \
    --max-len 4M --base "$T/model3.img" --image "$T/model4.img" \
    >"$T/run4.out" 2>&1 ||
    fail "4 MiB run: duet-testpeer exited $?: $(show "$T/run4.out")"
cat "$T/run4.out"
cmp "$T/mirror.img" "$T/model4.img" ||
    fail "4 MiB run: the mirror's volume differs from the model"

echo "--- refusals"
peer --uuid "$U2" --ops 10 --expect-refusal uuid >"$T/uuid.out" 2>&1 ||
    fail "a second uuid was not refused with a reason naming the uuid:" \
    "$(show "$T/uuid.out")"
cat "$T/uuid.out"
peer --uuid "$U1" --size 32M --ops 10 --expect-refusal size \
    >"$T/size.out" 2>&1 ||
    fail "a wrong volume size was not refused with a reason naming the" \
    "size: $(show "$T/size.out")"
cat "$T/size.out"
peer --uuid "$U1" --extent-size 4096 --ops 10 --expect-refusal extent \
    >"$T/extent.out" 2>&1 ||
    fail "a wrong extent size was not refused with a reason naming the" \
    "extent size: $(show "$T/extent.out")"
cat "$T/extent.out"
# Without --expect-refusal a refusal is exit 3.
peer --uuid "$U2" --ops 10 >"$T/uuid3.out" 2>&1
rc=$?
[ $rc -eq 3 ] || fail "refused peer exited $rc, expected 3: $(show "$T/uuid3.out")"
cmp "$T/mirror.img" "$T/model4.img" ||
    fail "a refused peer changed the volume"

echo "--- SIGTERM"
stop_mirror
rc=$?
[ $rc -eq 0 ] || fail "duet-mirror exited $rc on SIGTERM, expected 0"
cmp "$T/mirror.img" "$T/model4.img" ||
    fail "the volume changed across the mirror's shutdown"

echo "--- restart: the adopted uuid and the data persist"
start_mirror
peer --uuid "$U2" --ops 10 --expect-refusal uuid >"$T/uuid2.out" 2>&1 ||
    fail "after a restart, another uuid was not refused (uuid not kept in" \
    "the metadata?): $(show "$T/uuid2.out")"
peer --uuid "$U1" --mode sync --seed 505 --ops 300 \
    --base "$T/model4.img" --image "$T/model5.img" >"$T/run5.out" 2>&1 ||
    fail "run after restart: duet-testpeer exited $?: $(show "$T/run5.out")"
cat "$T/run5.out"
cmp "$T/mirror.img" "$T/model5.img" ||
    fail "after a restart: the mirror's volume differs from the model"
stop_mirror
rc=$?
[ $rc -eq 0 ] || fail "duet-mirror exited $rc on SIGTERM, expected 0"
echo "PASS: $TNAME"
