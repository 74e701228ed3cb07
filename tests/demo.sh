#!/bin/sh
# make demo: a mirror and a primary on loopback with a throwaway CA, written
# through real NBD clients (qemu-img convert, then fio with verify), stopped
# cleanly, and the two volumes compared. Leaves nothing running or behind.
set -u
B=${1:-build}
B=$(cd "$B" && pwd) || exit 1
TOP=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d /var/tmp/duet-demo.XXXXXX) || exit 1
MPID="" PPID_=""

cleanup() {
	for pid in $PPID_ $MPID; do
		kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

say() { printf '\n== %s\n' "$*"; }
die() {
	echo "demo: $*" >&2
	for f in primary mirror; do
		[ -s "$D/$f.log" ] && { echo "--- $f log" >&2; tail -15 "$D/$f.log" >&2; }
	done
	exit 1
}

port=$(python3 "$TOP/tests/free-port.py") || die "no free TCP port"
say "a throwaway CA and certificates for \"mirror\" and \"primary\" in $D/certs"
sh "$TOP/tests/certs.sh" "$D/certs" mirror primary || die "certificates"

for side in mirror primary; do
	peer=primary; [ $side = primary ] && peer=mirror
	cat >"$D/$side.conf" <<EOF
volume = {
  name = "demo";
  path = "$D/$side.img";
  size = "256M";
  metadata = "$D/$side.meta";
};
primary = {
  nbd_socket = "$D/demo.nbd";
  mirror = "127.0.0.1:$port";
  mode = "sync";
};
mirror = {
  listen = "127.0.0.1:$port";
};
tls = {
  ca = "$D/certs/ca.pem";
  cert = "$D/certs/$side.pem";
  key = "$D/certs/$side.key";
  peer_name = "$peer";
};
status = {
  socket = "$D/$side.status";
};
EOF
done

say "duet-mirror on 127.0.0.1:$port, duet-primary serving nbd+unix:///demo?socket=$D/demo.nbd (sync mode)"
# await WHO LOGLINE SECONDS PID: until the log shows LOGLINE, while PID lives.
await() {
	n=0
	until grep -q "$2" "$D/$1.log" 2>/dev/null; do
		n=$((n + 1))
		[ $n -le $(($3 * 10)) ] || die "no \"$2\" from duet-$1 in $3 s"
		kill -0 "$4" 2>/dev/null || die "duet-$1 exited"
		sleep 0.1
	done
}
"$B/duet-mirror" -f -c "$D/mirror.conf" >"$D/mirror.log" 2>&1 &
MPID=$!
await mirror 'listening on' 10 $MPID
"$B/duet-primary" -f -c "$D/primary.conf" >"$D/primary.log" 2>&1 &
PPID_=$!
await primary 'sync complete' 20 $PPID_
grep -v debug "$D/primary.log"

URI="nbd+unix:///demo?socket=$D/demo.nbd"
say "qemu-img convert: a 64 MiB image (random data and holes) into the volume"
qemu-img create -q -f raw "$D/src.raw" 64M
for off in 0 8 20 41 60; do
	head -c 3M /dev/urandom | dd of="$D/src.raw" bs=1M seek=$off conv=notrunc 2>/dev/null
done
qemu-img convert -p -n -f raw -O raw "$D/src.raw" "$URI" || die "qemu-img convert"

say "fio: 4 KiB random writes, queue depth 16, verified, over 64..192 MiB"
fio --name=demo --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k \
    --iodepth=16 --offset=64M --size=128M --io_size=48M --verify=crc32c \
    --do_verify=1 --verify_state_save=0 --randrepeat=1 --group_reporting >"$D/fio.out" 2>&1 ||
    { cat "$D/fio.out"; die "fio"; }
grep -E '^ +(write|read):|err=' "$D/fio.out"

say "stopping the primary (it waits for the mirror's acks), then the mirror"
kill -TERM $PPID_ && wait $PPID_ || die "duet-primary did not stop cleanly"
PPID_=""
kill -TERM $MPID && wait $MPID || die "duet-mirror did not stop cleanly"
MPID=""

say "checksums"
p=$(sha256sum <"$D/primary.img" | cut -d' ' -f1)
m=$(sha256sum <"$D/mirror.img" | cut -d' ' -f1)
echo "primary  $p"
echo "mirror   $m"
[ "$p" = "$m" ] || die "the mirror differs from the primary"
echo "mirror matches primary"
