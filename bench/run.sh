#!/bin/sh
# bench/run.sh BUILD_DIR: runs every benchmark (`make bench` calls it).
#
# Each bench prints its own table; the output is also kept in
# BUILD_DIR/bench/NAME.txt. Benchmarks measure, they do not assert: a missed
# target is reported in the table, and this script fails only when a bench
# is missing or exits non-zero (a real error).
#
#   BENCH_ARGS="--quick" make bench     arguments passed to every bench
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

if [ -n "$failed" ]; then
	echo "bench failures:$failed"
	exit 1
fi
exit 0
