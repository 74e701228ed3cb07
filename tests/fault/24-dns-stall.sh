#!/bin/sh
# 24-dns-stall: primary.mirror is a host name, and the name server does
# not answer (a cut cable often takes the resolver with it). The primary
# resolves on a thread of its own, so while every reconnect waits out the
# resolver's timeout (5 s, twice, here) its NBD clients are served as
# usual: no read takes as long as one lookup. The log says why the mirror
# is not reached.
#
# The primary runs in a mount namespace of its own whose /etc/resolv.conf
# names 127.0.0.77, where a UDP socket takes the queries and never
# answers. Needs root (unshare -m, mount --bind).
. "$(dirname "$0")/lib.sh"
need qemu-io
need python3
need unshare
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root for a mount namespace (unshare -m)"
	exit 77
fi

mk_certs
PORT=$(free_port)
write_primary_conf "$T/primary.conf" sync
sed -i -e 's/^  mirror = "127\.0\.0\.1:\([0-9]*\)";$/  mirror = "mirror.duet-test.invalid:\1";/' \
    -e 's/^  mode = "sync";$/&\n  connect_timeout = 30;\n  reconnect_max = 1;/' \
    "$T/primary.conf"
grep -q 'mirror.duet-test.invalid' "$T/primary.conf" ||
    fail "could not name the mirror by host name"
printf 'nameserver 127.0.0.77\noptions timeout:5 attempts:2\n' \
    >"$T/resolv.conf"

cat >"$T/sink.py" <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.77", 53))
print("ready", flush=True)
while True:
    s.recvfrom(4096)
EOF
bg python3 "$T/sink.py" >"$T/sink.out" 2>&1
wait_for "$T/sink.out" '^ready' || fail "the silent name server did not start"

cat >"$T/primary.sh" <<EOF
#!/bin/sh
exec unshare -m sh -c 'mount --bind "$T/resolv.conf" /etc/resolv.conf &&
    exec "\$0" "\$@"' "$PRIMARY" "\$@"
EOF
chmod +x "$T/primary.sh"
PRIMARY=$T/primary.sh
start_primary

# 15 s of reads, one at a time: at least one lookup times out meanwhile.
max=0 n=0
end=$(( $(date +%s) + 15 ))
while [ "$(date +%s)" -lt $end ]; do
	t0=$(date +%s%N)
	qemu-io -f raw -c "read 0 4k" "$NBD_URI" >"$T/r.out" 2>&1 ||
	    fail "a read failed: $(cat "$T/r.out")"
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	[ $ms -gt $max ] && max=$ms
	n=$((n + 1))
	sleep 0.2
done
echo "ok   $n reads while the name server is silent, the slowest $max ms"
[ $max -lt 4000 ] ||
    fail "a read took $max ms: the event thread waited for the resolver"
wait_for "$PRIMARY_LOG" 'mirror mirror.duet-test.invalid:[0-9]*: .*(Temporary failure in name resolution|Name or service not known).*retrying' ||
    fail "the log does not say the name did not resolve: $(tail -5 "$PRIMARY_LOG")"
echo "ok   primary: $(grep -Eo '(Temporary failure in name resolution|Name or service not known).*retrying' "$PRIMARY_LOG" | head -1)"
stop_primary || fail "duet-primary exited with $?"
echo "PASS: $TNAME"
