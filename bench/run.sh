#!/bin/sh
# bench/run.sh BUILD_DIR: runs every benchmark (`make bench` calls it).
#
# Each bench prints its own table; the output is also kept in
# BUILD_DIR/bench/NAME.txt. Benchmarks measure, they do not assert: a missed
# target is reported in the table, and this script fails only when a bench
# is missing or exits non-zero (a real error).
#
#   BENCH_ARGS="--quick" make bench     arguments passed to every bench
#   BENCH_E2E=1 make bench              also bench/e2e.sh: duet end to end
#                                       against nbdkit (about 5 minutes; needs
#                                       fio, nbdkit, qemu-io; RUNTIME, VOL_SIZE
#                                       and its other knobs pass through)
#   BENCH_SOAK=1 make bench             also bench/soak.sh: 10 minutes of mixed
#                                       load, the mirror restarted every 2
#                                       minutes, RSS sampled (--quick: 1 minute)
#   BENCH_RESYNC=1 make bench           also bench/resync.sh: what a resync
#                                       moves and how fast, against the
#                                       loopback TLS limit (a few minutes)
#
# To add a bench: drop bench/NAME.c (the Makefile builds it into
# BUILD_DIR/bench/NAME) and add a `run NAME` line below.
set -u
B=${1:-build}
ARGS=${BENCH_ARGS:-}
failed=""

run() {
	name=$1
	bin="$B/bench/$name"
	echo "== $name"
	if [ ! -x "$bin" ]; then
		echo "FAIL $name: $bin not built"
		failed="$failed $name"
		return
	fi
	st=$(mktemp "${TMPDIR:-/tmp}/duet-bench.XXXXXX")
	# shellcheck disable=SC2086 # ARGS is a word list on purpose
	{ "$bin" $ARGS; echo $? >"$st"; } | tee "$B/bench/$name.txt"
	rc=$(cat "$st")
	rm -f "$st"
	if [ "$rc" -ne 0 ]; then
		echo "FAIL $name: exit $rc"
		failed="$failed $name"
	fi
	echo
}

run engine
run dispatch
run flushfloor

# The end-to-end bench is a script, not a C program, and takes minutes: it
# runs only when asked for. Exit 77 (a tool is missing) is a skip.
if [ "${BENCH_E2E:-0}" = 1 ]; then
	echo "== e2e"
	mkdir -p "$B/bench"
	st=$(mktemp "${TMPDIR:-/tmp}/duet-bench.XXXXXX")
	{ sh "$(dirname "$0")/e2e.sh" "$B"; echo $? >"$st"; } | tee "$B/bench/e2e.txt"
	rc=$(cat "$st")
	rm -f "$st"
	if [ "$rc" -eq 77 ]; then
		echo "SKIP e2e"
	elif [ "$rc" -ne 0 ]; then
		echo "FAIL e2e: exit $rc"
		failed="$failed e2e"
	fi
	echo
fi

# bench/soak.sh and bench/resync.sh: scripts too, opt-in. They keep their own
# files (CSV, logs, .summary) in $B/bench as well. Exit 77 is a skip.
script() {
	name=$1
	echo "== $name"
	mkdir -p "$B/bench"
	st=$(mktemp "${TMPDIR:-/tmp}/duet-bench.XXXXXX")
	# --quick reaches them through BENCH_ARGS (they read it themselves)
	{ sh "$(dirname "$0")/$name.sh" "$B"; echo $? >"$st"; } |
	    tee "$B/bench/$name.txt"
	rc=$(cat "$st")
	rm -f "$st"
	if [ "$rc" -eq 77 ]; then
		echo "SKIP $name"
	elif [ "$rc" -ne 0 ]; then
		echo "FAIL $name: exit $rc"
		failed="$failed $name"
	fi
	echo
}
[ "${BENCH_RESYNC:-0}" = 1 ] && script resync
[ "${BENCH_SOAK:-0}" = 1 ] && script soak

if [ -n "$failed" ]; then
	echo "bench failures:$failed"
	exit 1
fi
exit 0
