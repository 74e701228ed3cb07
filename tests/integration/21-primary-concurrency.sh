#!/bin/sh
# 21-primary-concurrency: five clients at once on one volume, all over the
# same 8 MiB, in each mode: four fio processes (random writes of 4k..64k,
# different seeds, one mixing in reads and one flushing now and then) and
# one qemu-io running a random list of trims, write-zeroes, FUA writes and
# pattern writes. The writes overlap, so nothing can be verified against a
# model; what must hold: no client sees an error, the primary's volume
# equals what a client reads back afterwards, and after a clean stop the
# mirror's volume equals the primary's byte for byte (the mirror applied
# the overlapping writes in the primary's order). The last run is sync
# with a tiny in-flight window (2 operations, 1 MiB), so that the primary
# stops and resumes reading its clients all the time: a client whose
# large WRITE arrived in pieces just before a pause must still get its
# next request read after the resume (a qemu-io once hung there).
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"
need fio
need qemu-io
need nbdcopy

SIZE=64M
RUNTIME=${RUNTIME:-4}
mk_certs
cd "$T" || fail "cd $T"

# qemu_cmds SEED: qemu-io -c arguments, one per line: 400 random
# operations on 0..8M, 4k-aligned, 4k..256k long, a short sleep between.
qemu_cmds() {
	awk -v seed="$1" 'BEGIN {
		srand(seed)
		for (i = 0; i < 400; i++) {
			len = 4096 * 2 ^ int(rand() * 7)
			off = 4096 * int(rand() * (8388608 - len) / 4096)
			k = int(rand() * 6)
			if (k == 0) c = "discard " off " " len
			else if (k == 1) c = "write -z " off " " len
			else if (k == 2) c = "write -z -u " off " " len
			else if (k == 3) c = "write -f -P " (i % 255 + 1) " " off " " len
			else if (k == 4) c = "write -P " (i % 255 + 1) " " off " " len
			else c = "flush"
			print c
			if (i % 4 == 3) print "sleep 5"
		}
	}'
}

for run in sync memsync async sync-window; do
	mode=${run%-window}
	echo "--- $run"
	rm -f "$T"/primary.img "$T"/primary.meta "$T"/mirror.img \
	    "$T"/mirror.meta "$T"/out.raw "$T"/fio.*.out "$T"/qemu-io.out
	write_conf "$T/mirror.conf"
	write_primary_conf "$T/primary.conf" "$mode"
	if [ "$run" != "$mode" ]; then
		sed -i 's/^  mode = .*/&\n  max_inflight = 2;\n  max_inflight_bytes = "1M";/' \
		    "$T/primary.conf"
		grep -q 'max_inflight = 2;' "$T/primary.conf" ||
		    fail "test setup: sed did not set max_inflight"
	fi
	start_mirror
	start_primary
	wait_synced 1

	fio_pids=""
	for i in 1 2 3 4; do
		extra=""
		case $i in
		2) extra="--rw=randrw --rwmixwrite=70" ;;
		3) extra="--fsync=32" ;;
		esac
		bg timeout -k 5 60 fio --name=c$i --ioengine=nbd \
		    --uri="$NBD_URI" --rw=randwrite --bsrange=4k-64k --iodepth=16 --offset=0 --size=8M \
		    --norandommap --randseed=$((i * 7919)) --time_based \
		    --runtime="$RUNTIME" --verify_state_save=0 $extra \
		    --output="$T/fio.$i.out"
		fio_pids="$fio_pids $LAST_PID"
	done
	# qemu-io: the -c list, built as positional parameters.
	set --
	qemu_cmds $$ >"$T/qemu-io.cmds"
	while IFS= read -r c; do
		set -- "$@" -c "$c"
	done <"$T/qemu-io.cmds"
	n=0
	qerr=""
	# Rounds until the fio processes are done (at least one).
	while :; do
		timeout 60 qemu-io -f raw "$NBD_URI" "$@" >"$T/qemu-io.out" 2>&1 ||
		    qerr="qemu-io exited $? (124: hung for 60 s)"
		grep -qiE 'error|failed|not supported' "$T/qemu-io.out" &&
		    qerr="qemu-io reported: $(grep -iE 'error|failed|not supported' "$T/qemu-io.out" | head -5)"
		[ -z "$qerr" ] || break
		n=$((n + 1))
		busy=0
		for p in $fio_pids; do
			_alive "$p" && busy=1
		done
		[ $busy = 1 ] || break
	done
	for p in $fio_pids; do
		bg_wait "$p" || qerr="$qerr; a fio process exited with $?"
	done
	[ -z "$qerr" ] || fail "$run: $qerr"
	for i in 1 2 3 4; do
		grep -q 'err= *0' "$T/fio.$i.out" ||
		    fail "$run: fio $i: $(tail -20 "$T/fio.$i.out")"
		grep -q 'WRITE: bw=' "$T/fio.$i.out" ||
		    fail "$run: fio $i wrote nothing: $(cat "$T/fio.$i.out")"
	done
	echo "ok   $run: 4 fio x ${RUNTIME}s and $n qemu-io rounds, no error"

	timeout 60 nbdcopy "$NBD_URI" "$T/out.raw" ||
	    fail "$run: nbdcopy out failed"
	stop_primary || fail "$run: duet-primary exited with $?"
	stop_mirror || fail "$run: duet-mirror exited with $?"
	cmp "$T/out.raw" "$T/primary.img" ||
	    fail "$run: the primary's volume differs from what a client read"
	cmp -s -n 8388608 "$T/out.raw" /dev/zero &&
	    fail "$run: 0..8M is all zero: the clients wrote nothing"
	cmp -s -i 8388608 -n 58720256 "$T/out.raw" /dev/zero ||
	    fail "$run: something was written beyond 8M"
	same_images "$run"
	echo "ok   $run: primary = client's read = mirror"
done
echo "PASS: $TNAME"
