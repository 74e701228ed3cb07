#!/bin/sh
# 25-primary-config: duet-primary -t checks a configuration ("configuration
# OK", exit 0), and refuses a bad one with sysexits EX_CONFIG (78) and a
# message that says where ("FILE:LINE: key" for an unknown key, the key's
# name for a missing required one). A volume file smaller than the
# configured size is refused at start with EX_IOERR (74), naming the path,
# and is left as it was. --help prints the usage and exits 0; an unknown
# option exits 64 (EX_USAGE).
NEED_PRIMARY=1
. "$(dirname "$0")/lib.sh"

EX_CONFIG=78
EX_IOERR=74

# run_p NAME ARGS...: duet-primary ARGS (see run_exit).
run_p() {
	_n=$1
	shift
	run_exit "$_n" "$PRIMARY" "$@"
}

check_usage "$PRIMARY" 64
mk_certs
write_primary_conf "$T/good.conf" sync

# A good configuration.
run_p good -t -c "$T/good.conf"
expect_exit good 0 "configuration OK"
[ ! -e "$T/primary.img" ] && [ ! -e "$T/primary.meta" ] ||
    fail "good: -t created the volume or its metadata"
[ ! -e "$NBD_SOCK" ] || fail "good: -t created the NBD socket"

# A TLS key that cannot be read: -t loads the TLS files as the daemon
# would, and refuses, naming the file.
sed "s|^  key = \".*\";$|  key = \"$T/certs/missing.key\";|" "$T/good.conf" >"$T/nokey.conf"
grep -q 'missing.key' "$T/nokey.conf" || fail "test setup: tls.key not replaced"
run_p no-key -t -c "$T/nokey.conf"
expect_exit no-key $EX_CONFIG "$T/certs/missing.key"
grep -q 'configuration OK' "$T/no-key.out" &&
    fail "no-key: says \"configuration OK\" as well"

# No primary.mirror: -t and the daemon both refuse, naming the key.
grep -v '^  mirror = ' "$T/good.conf" >"$T/nomirror.conf"
grep -q '^  mirror = ' "$T/nomirror.conf" &&
    fail "test setup: the mirror line is still there"
run_p no-mirror -t -c "$T/nomirror.conf"
expect_exit no-mirror $EX_CONFIG primary.mirror
grep -q 'configuration OK' "$T/no-mirror.out" &&
    fail "no-mirror: says \"configuration OK\" as well"
run_p no-mirror-daemon -f -c "$T/nomirror.conf"
expect_exit no-mirror-daemon $EX_CONFIG primary.mirror
[ ! -e "$T/primary.img" ] || fail "no-mirror-daemon: created the volume"

# An unknown key in the primary section: FILE:LINE and the key.
sed 's/^  mode = "sync";$/  mode = "sync";\n  mdoe = "async";/' \
    "$T/good.conf" >"$T/unknown.conf"
line=$(grep -n 'mdoe' "$T/unknown.conf" | cut -d: -f1)
[ -n "$line" ] || fail "test setup: sed did not add the key"
run_p unknown-key -t -c "$T/unknown.conf"
expect_exit unknown-key $EX_CONFIG "$T/unknown.conf:$line:" mdoe
run_p unknown-key-daemon -f -c "$T/unknown.conf"
expect_exit unknown-key-daemon $EX_CONFIG "$T/unknown.conf:$line:" mdoe
[ ! -e "$NBD_SOCK" ] || fail "unknown-key-daemon: left an NBD socket"

# A bad mode value names the key and its line as well.
sed 's/^  mode = "sync";$/  mode = "fast";/' "$T/good.conf" >"$T/badmode.conf"
line=$(grep -n '"fast"' "$T/badmode.conf" | cut -d: -f1)
[ -n "$line" ] || fail "test setup: sed did not change the mode"
run_p bad-mode -t -c "$T/badmode.conf"
expect_exit bad-mode $EX_CONFIG "$T/badmode.conf:$line:" mode

# An existing volume file smaller than the configured 64M: the daemon
# refuses with 74, names the file, and neither grows nor removes it.
truncate -s 1M "$T/primary.img" || fail "truncate failed"
run_p small-volume -f -c "$T/good.conf"
expect_exit small-volume $EX_IOERR "$T/primary.img"
[ "$(stat -c %s "$T/primary.img")" = 1048576 ] ||
    fail "small-volume: the volume file was resized to" \
    "$(stat -c %s "$T/primary.img")"
[ ! -e "$NBD_SOCK" ] || fail "small-volume: left an NBD socket"
grep -qiE 'configuration OK|serving' "$T/small-volume.out" &&
    fail "small-volume: claims to serve: $(show "$T/small-volume.out")"

# The same file at the right size starts (and stops cleanly): the refusal
# above was about the size, not about anything else in the setup.
truncate -s 64M "$T/primary.img" || fail "truncate failed"
start_primary "$T/good.conf"
wait_for "$PRIMARY_LOG" 'serving vol0' ||
    fail "right-size volume: no \"serving\" line"
stop_primary || fail "right-size volume: duet-primary exited with $?"
echo "ok   right-size volume: starts and stops"

# primary.nbd_group: the socket gets that group (mode 0660); a group that
# does not exist stops the daemon with 71, naming the key.
if getent group nogroup >/dev/null 2>&1; then
	sed 's|^  mode = "sync";$|  mode = "sync";\n  nbd_group = "nogroup";|' \
	    "$T/good.conf" >"$T/group.conf"
	start_primary "$T/group.conf"
	[ "$(stat -c '%G %a' "$NBD_SOCK")" = "nogroup 660" ] ||
	    fail "nbd_group: socket is $(stat -c '%G %a' "$NBD_SOCK")"
	stop_primary || fail "nbd_group: duet-primary exited with $?"
	echo "ok   nbd_group: socket group nogroup, mode 660"
fi
sed 's|^  mode = "sync";$|  mode = "sync";\n  nbd_group = "no-such-group-duet";|' \
    "$T/good.conf" >"$T/nogroup.conf"
run_p no-group -f -c "$T/nogroup.conf"
expect_exit no-group 71 "primary.nbd_group" "no-such-group-duet"
echo "PASS: $TNAME"
