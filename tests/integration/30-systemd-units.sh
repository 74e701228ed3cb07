#!/bin/sh
# The systemd units pass "systemd-analyze verify" without a word (it exits
# 0 on unknown keys and bad values, so any output fails the test), their
# Documentation= pages exist, and the offline security review rates them
# at most "OK". The units name /usr/local/sbin; the copies verified here
# name the built daemons, since verify wants ExecStart's binary to exist.
. "$(dirname "$0")/lib.sh"
need systemd-analyze

mkdir -p "$T/units" "$T/man/man5" "$T/man/man8"
for role in primary mirror; do
	src=$TOP/conf/duet-$role@.service
	[ -f "$src" ] || fail "$src is missing"
	grep -q "^ExecStart=/usr/local/sbin/duet-$role -f -c /etc/duet/%i.conf\$" \
	    "$src" || fail "$src: ExecStart is not /usr/local/sbin/duet-$role -f -c /etc/duet/%i.conf"
	for key in Type=notify RuntimeDirectory=duet Restart=on-failure \
	    NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
	    PrivateTmp=yes 'ExecReload=/bin/kill -HUP $MAINPID'; do
		grep -qxF "$key" "$src" || fail "$src lacks $key"
	done
	# The template as an instance, so that %i resolves.
	sed "s|/usr/local/sbin/duet-$role|$DUET_BUILD/duet-$role|g" "$src" \
	    >"$T/units/duet-$role@vol0.service"
done
cp "$TOP"/*/*.8 "$T/man/man8/"
cp "$TOP"/*/*.5 "$T/man/man5/"

# Documentation=man:... is looked up with man(1) when there is one.
if command -v man >/dev/null 2>&1; then
	manopt="--man=yes"
else
	manopt="--man=no"
fi
MANPATH=$T/man SYSTEMD_LOG_COLOR=0 systemd-analyze verify $manopt \
    "$T/units/duet-primary@vol0.service" "$T/units/duet-mirror@vol0.service" \
    >"$T/verify.out" 2>&1
rc=$?
[ $rc -eq 0 ] || fail "systemd-analyze verify exited $rc:
$(cat "$T/verify.out")"
[ -s "$T/verify.out" ] && fail "systemd-analyze verify complained:
$(cat "$T/verify.out")"
echo "verify: clean ($manopt)"

# Offline review (systemd 250+): 0 is locked down, 10 wide open.
if systemd-analyze security --help 2>&1 | grep -q -- --offline; then
	for role in primary mirror; do
		systemd-analyze security --offline=yes --no-pager \
		    "$T/units/duet-$role@vol0.service" >"$T/sec.out" 2>&1
		score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' \
		    "$T/sec.out")
		[ -n "$score" ] || fail "no exposure level:
$(tail -5 "$T/sec.out")"
		echo "security: duet-$role exposure $score"
		awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' ||
		    fail "duet-$role@.service exposure $score > 3.0:
$(grep '✗' "$T/sec.out")"
	done
else
	echo "security: systemd-analyze has no --offline, skipped"
fi
echo PASS
