#!/bin/sh
# 12-mirror-config: duet-mirror -t checks a configuration and says where it
# is wrong (sysexits EX_CONFIG = 78, "FILE:LINE: key: reason"); a daemon
# started on a bad file refuses to start the same way. --help prints the
# usage and exits 0; an unknown option exits 64 (EX_USAGE).
. "$(dirname "$0")/lib.sh"

EX_CONFIG=78

# run_t NAME CONF: duet-mirror -t -c CONF (see run_exit).
run_t() {
	run_exit "$1" "$MIRROR" -t -c "$2"
}

# expect_config_error NAME CONF TEXT...: exit 78, every TEXT in the output.
expect_config_error() {
	_c=$1
	run_t "$1" "$2"
	shift 2
	expect_exit "$_c" $EX_CONFIG "$@"
}

check_usage "$MIRROR" 64
mk_certs
write_conf "$T/good.conf"

run_t good "$T/good.conf"
[ $rc -eq 0 ] || fail "good config: -t exited $rc: $(show "$T/good.out")"
grep -q 'configuration OK' "$T/good.out" ||
    fail "good config: no \"configuration OK\": $(show "$T/good.out")"
echo "ok   good: $(cat "$T/good.out")"

# An unknown key in the mirror section, on a known line.
sed 's/^  task_groups = 4;$/  task_groups = 4;\n  tsak_groups = 4;/' \
    "$T/good.conf" >"$T/unknown.conf"
line=$(grep -n 'tsak_groups' "$T/unknown.conf" | cut -d: -f1)
[ -n "$line" ] || fail "test setup: sed did not add the key"
expect_config_error unknown-key "$T/unknown.conf" \
    "$T/unknown.conf:$line:" tsak_groups

# A size with a bad suffix.
sed 's/^  size = "64M";$/  size = "20Q";/' "$T/good.conf" >"$T/badsize.conf"
line=$(grep -n '20Q' "$T/badsize.conf" | cut -d: -f1)
[ -n "$line" ] || fail "test setup: sed did not change the size"
expect_config_error bad-size "$T/badsize.conf" \
    "$T/badsize.conf:$line:" volume.size

# No such file.
expect_config_error missing-file "$T/nonexistent.conf" "$T/nonexistent.conf"

# The daemon itself refuses to start on a bad file (and does not hang).
timeout 10 "$MIRROR" -f -c "$T/unknown.conf" >"$T/start.out" 2>&1
rc=$?
[ $rc -eq $EX_CONFIG ] ||
    fail "duet-mirror -f on a bad config exited $rc, expected $EX_CONFIG:" \
    "$(show "$T/start.out")"
grep -qF tsak_groups "$T/start.out" ||
    fail "duet-mirror -f on a bad config did not name the key:" \
    "$(show "$T/start.out")"
echo "ok   refuses to start: $(head -1 "$T/start.out")"
echo "PASS: $TNAME"
