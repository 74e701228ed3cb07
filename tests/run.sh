#!/bin/sh
# Runs every test: the Check unit suites, the fuzz targets (briefly, when
# built), the integration and fault scripts. Each Check test counts as one;
# each script counts as one (exit 0 pass, 77 skip, anything else fail).
# Ends with one line: "N passed, N failed" (", N skipped" when any were).
set -u
B=${B:-build}
export DUET_BUILD="$PWD/$B"
pass=0 fail=0 skip=0
log=$(mktemp -d /tmp/duet-check.XXXXXX)
failed_names=""

# run_suite NAME CMD...: one Check suite; each of its tests counts.
run_suite() {
	name=$1; shift
	CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-4} "$@" >"$log/$name.out" 2>&1
	rc=$?
	line=$(grep -E '^[0-9]+%: Checks: ' "$log/$name.out" | tail -1)
	n=$(echo "$line" | sed -n 's/.*Checks: \([0-9]*\).*/\1/p')
	f=$(echo "$line" | sed -n 's/.*Failures: \([0-9]*\).*/\1/p')
	e=$(echo "$line" | sed -n 's/.*Errors: \([0-9]*\).*/\1/p')
	if [ -z "$n" ]; then
		echo "FAIL $name (no result line, exit $rc)"; sed 's/^/    /' "$log/$name.out" | tail -20
		fail=$((fail + 1)); failed_names="$failed_names $name"; return
	fi
	pass=$((pass + n - f - e)); fail=$((fail + f + e))
	if [ $((f + e)) -gt 0 ] || [ $rc -ne 0 ]; then
		echo "FAIL $name: $line"; grep -E ':[EF]:' "$log/$name.out" | sed 's/^/    /'
		grep -A12 'WARNING: ThreadSanitizer' "$log/$name.out" | head -40 | sed 's/^/    /'
		failed_names="$failed_names $name"
		[ $((f + e)) -eq 0 ] && fail=$((fail + 1))
	else
		echo "ok   $name: $n checks"
	fi
}

for t in "$B"/tests/check_*; do
	[ -x "$t" ] && run_suite "$(basename "$t")" "$t"
done

# The threaded suites under ThreadSanitizer (make tsan). A report fails the
# suite: the exit code is non-zero, in the forked test or at the end. Some
# kernels' address-space randomisation leaves TSan no room ("unexpected
# memory mapping"); the suite then runs with it off, or is skipped where
# that is not allowed either (a container's seccomp filter).
TSAN_OPTIONS="halt_on_error=1 exitcode=66${TSAN_OPTIONS:+ $TSAN_OPTIONS}"
export TSAN_OPTIONS
for t in build-tsan/tests/check_*; do
	[ -x "$t" ] || continue
	name=tsan/$(basename "$t")
	mkdir -p "$log/tsan"
	# CK_RUN_SUITE names no suite: TSan starts, no test runs.
	if CK_RUN_SUITE=none "$t" >"$log/$name.probe" 2>&1 ||
	    ! grep -q 'unexpected memory mapping' "$log/$name.probe"; then
		run_suite "$name" "$t"
	elif setarch "$(uname -m)" -R true 2>/dev/null; then
		run_suite "$name" setarch "$(uname -m)" -R "$t"
	else
		echo "skip $name: TSan cannot map its shadow memory here"
		skip=$((skip + 1))
	fi
done

for t in build-fuzz/fuzz_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	if "$t" -max_total_time="${FUZZ_SECONDS:-20}" -rss_limit_mb=2048 \
		>"$log/$name.out" 2>&1; then
		echo "ok   $name: $(grep -o 'Done [0-9]* runs' "$log/$name.out")"
		pass=$((pass + 1))
	else
		echo "FAIL $name"; tail -30 "$log/$name.out" | sed 's/^/    /'
		fail=$((fail + 1)); failed_names="$failed_names $name"
	fi
done

for t in tests/integration/[0-9]*.sh tests/fault/[0-9]*.sh; do
	[ -f "$t" ] || continue
	name=$(basename "$t" .sh)
	start=$(date +%s)
	timeout -k 10 "${TEST_TIMEOUT:-300}" sh "$t" >"$log/$name.out" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	case $rc in
	0) echo "ok   $name (${secs}s)"; pass=$((pass + 1)) ;;
	77) echo "skip $name: $(grep '^SKIP' "$log/$name.out" | tail -1)"; skip=$((skip + 1)) ;;
	*) echo "FAIL $name (exit $rc, ${secs}s)"; tail -30 "$log/$name.out" | sed 's/^/    /'
	   fail=$((fail + 1)); failed_names="$failed_names $name" ;;
	esac
done

[ -n "$failed_names" ] && echo "failed:$failed_names (logs in $log)"
[ -z "$failed_names" ] && rm -rf "$log"
if [ "$skip" -gt 0 ]; then
	echo "$pass passed, $fail failed, $skip skipped"
else
	echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
