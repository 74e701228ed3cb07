#!/bin/sh
# Installs the Debian 12 packages duet needs to build, test and demo.
# As root it runs apt-get; otherwise it prints the command to run.
set -eu
# qemu-system-common: qemu-storage-daemon, for the QEMU systems of bench/e2e.sh
PKGS="build-essential pkg-config clang libclang-rt-14-dev
libevent-dev libssl-dev libconfig-dev check libjansson-dev libsystemd-dev
openssl fio qemu-utils qemu-system-common nbdkit libnbd-bin socat iproute2
systemd"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	echo "deps: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
	echo "deps: missing packages:$missing"
	echo "deps: run as root: apt-get install -y$missing"
	exit 1
fi
