#!/bin/sh
# "make install DESTDIR=... PREFIX=..." installs every listed file, with
# the right modes, nothing outside DESTDIR/PREFIX, and units that name the
# programs under PREFIX; UNITDIR moves the units.
. "$(dirname "$0")/lib.sh"
need make

PREFIX=/opt/duet
D=$T/root
# SAN (from make check) picks the build flavour already built.
make -s --no-print-directory -C "$TOP" install DESTDIR="$D" PREFIX="$PREFIX" \
    >"$T/install.out" 2>&1 || fail "make install failed:
$(tail -20 "$T/install.out")"

P=$D$PREFIX
for f in sbin/duet-primary sbin/duet-mirror sbin/duetctl; do
	[ -f "$P/$f" ] && [ -x "$P/$f" ] || fail "$PREFIX/$f is not installed executable"
done
for f in share/man/man8/duet-primary.8 share/man/man8/duet-mirror.8 \
    share/man/man8/duetctl.8 share/man/man5/duet.conf.5 \
    share/doc/duet/duet.conf.example \
    lib/systemd/system/duet-primary@.service \
    lib/systemd/system/duet-mirror@.service \
    lib/tmpfiles.d/duet.conf; do
	[ -f "$P/$f" ] || fail "$PREFIX/$f is not installed"
	[ "$(stat -c %a "$P/$f")" = 644 ] || fail "$PREFIX/$f is mode $(stat -c %a "$P/$f"), not 644"
done
[ -e "$P/sbin/duet-testpeer" ] && fail "the test peer was installed"

# Everything below DESTDIR/PREFIX.
find "$D" -type f | sed "s|^$P/||" >"$T/files"
grep '^/' "$T/files" && fail "installed outside PREFIX (above)"

for role in primary mirror; do
	u=$P/lib/systemd/system/duet-$role@.service
	grep -qx "ExecStart=$PREFIX/sbin/duet-$role -f -c /etc/duet/%i.conf" "$u" ||
	    fail "$u does not start $PREFIX/sbin/duet-$role:
$(grep ^Exec "$u")"
	grep -q /usr/local/sbin "$u" && fail "$u still names /usr/local/sbin"
done
"$P/sbin/duetctl" -h >/dev/null || fail "the installed duetctl does not run"

# UNITDIR: where a distribution wants units.
make -s --no-print-directory -C "$TOP" install DESTDIR="$D.2" PREFIX=/usr \
    UNITDIR=/lib/systemd/system >"$T/install2.out" 2>&1 ||
    fail "make install UNITDIR=... failed: $(tail -20 "$T/install2.out")"
[ -f "$D.2/lib/systemd/system/duet-primary@.service" ] ||
    fail "UNITDIR=/lib/systemd/system was not used"
grep -q '^ExecStart=/usr/sbin/duet-primary ' \
    "$D.2/lib/systemd/system/duet-primary@.service" ||
    fail "PREFIX=/usr: the unit does not start /usr/sbin/duet-primary"
rm -rf "$D.2"
echo "installed: $(wc -l <"$T/files") files"
echo PASS
