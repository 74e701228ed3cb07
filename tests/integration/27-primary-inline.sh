#!/bin/sh
# 27-primary-inline: with mirror.inline_us at its default, 4 KiB writes to
# the page cache are applied by the thread that received them on both
# daemons (engine.inline_ops counts them); with inline_us = 0 every op goes
# to a worker thread (inline_ops stays 0). The first pair also polls
# (mirror.poll_us: engine.polls grows on both daemons over a run of one
# write at a time, and neither's engine.poll_window_us passes poll_us),
# the second never does (polls and the window stay 0). Either way fio's verify pass reads back what it
# wrote and the mirror equals the primary byte for byte.
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"
need fio
need python3

SIZE=64M
mk_certs

engine() {
	"$DUET_BUILD/duetctl" -s "$1" status --json | python3 -c 'import json, sys
e = json.load(sys.stdin)["engine"]
print(e["ops"], e["inline_ops"], e["polls"], e["poll_window_us"])'
}

# counted KEY VALUE WHAT PRIMARY MIRROR: with KEY at 0 neither daemon counted
# WHAT, with it set both did.
counted() {
	if [ "$2" = 0 ]; then
		[ "$4" -eq 0 ] && [ "$5" -eq 0 ] ||
		    fail "$1 0, yet $3 (primary $4, mirror $5)"
	else
		[ "$4" -gt 0 ] && [ "$5" -gt 0 ] ||
		    fail "$1 $2, yet not both counted $3 (primary $4, mirror $5)"
	fi
}

# run INLINE_US POLL_US: a pair with those settings, fio with verify, then
# checks.
run() {
	poll=$2
	write_conf "$T/mirror.conf"
	write_primary_conf "$T/primary.conf" sync
	for f in "$T/mirror.conf" "$T/primary.conf"; do
		sed -i "s/^  range_size = \"1M\";$/&\n  inline_us = $1;\n  poll_us = $poll;/" "$f"
		grep -q "inline_us = $1;" "$f" && grep -q "poll_us = $poll;" "$f" ||
		    fail "cannot set inline_us and poll_us in $f"
	done
	rm -f "$T/primary.img" "$T/mirror.img" "$T"/*.meta
	start_mirror
	start_primary
	wait_synced 1
	fio --name=inline --ioengine=nbd --uri="$NBD_URI" --rw=randwrite \
	    --bs=4k --iodepth=8 --size=8M --verify=crc32c \
	    --verify_fatal=1 --verify_state_save=0 --randrepeat=1 \
	    >"$T/fio.out" 2>&1 ||
	    fail "fio (inline_us $1): $(tail -5 "$T/fio.out")"
	# One write at a time leaves CPU to spare, which polling needs (at
	# QD 8 a busy host may leave it none).
	fio --name=qd1 --ioengine=nbd --uri="$NBD_URI" --rw=randwrite \
	    --bs=4k --iodepth=1 --offset=16M --size=2M --randrepeat=1 \
	    >"$T/fio-qd1.out" 2>&1 ||
	    fail "fio QD 1 (inline_us $1): $(tail -5 "$T/fio-qd1.out")"
	set -- "$1" $(engine "$PRIMARY_STATUS") $(engine "$MIRROR_STATUS")
	[ $# -eq 9 ] || fail "no engine object in the status (inline_us $1)"
	echo "     inline_us $1: primary $3 of $2 ops inline, mirror $7 of $6;" \
	    "poll_us $poll: polls primary $4, mirror $8; window primary" \
	    "$5 us, mirror $9 us"
	counted poll_us "$poll" "polls of the event loop" "$4" "$8"
	counted inline_us "$1" "ops run inline" "$3" "$7"
	[ "$5" -le "$poll" ] && [ "$9" -le "$poll" ] ||
	    fail "poll window past poll_us $poll (primary $5, mirror $9)"
	set -- "$1" "$2" "$3" "$6" "$7"
	# fio writes 2048 blocks, then reads them back (primary only).
	[ "$2" -ge 4096 ] && [ "$4" -ge 2048 ] ||
	    fail "fewer ops than fio made (primary $2 of 4096, mirror $4" \
	    "of 2048)"
	stop_primary || fail "duet-primary exited with $?"
	stop_mirror || fail "duet-mirror exited with $?"
	same_images "inline_us $1"
	echo "ok   inline_us $1: fio verified, the mirror equals the primary"
}

run 1000000 1000
run 0 0
echo "PASS: $TNAME"
