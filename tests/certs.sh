#!/bin/sh
# certs.sh DIR NAME...: a throwaway CA in DIR/ca.pem (+ ca.key) and, for each
# NAME, DIR/NAME.pem and DIR/NAME.key signed by it, with NAME as CN and as a
# DNS subjectAltName. "certs.sh DIR --rogue NAME" signs NAME with a second,
# unrelated CA (DIR/rogue-ca.pem) instead: a certificate duet must refuse.
set -eu
dir=$1; shift
mkdir -p "$dir"
ca=ca
if [ "${1:-}" = "--rogue" ]; then ca=rogue-ca; shift; fi
if [ ! -f "$dir/$ca.pem" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$dir/$ca.key" -out "$dir/$ca.pem" -days 2 \
		-subj "/CN=duet test $ca" >/dev/null 2>&1
fi
for name in "$@"; do
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$dir/$name.key" -out "$dir/$name.csr" \
		-subj "/CN=$name" >/dev/null 2>&1
	printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' \
		"$name" >"$dir/$name.ext"
	openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.pem" \
		-CAkey "$dir/$ca.key" -CAcreateserial -days 2 \
		-extfile "$dir/$name.ext" -out "$dir/$name.pem" >/dev/null 2>&1
	rm -f "$dir/$name.csr" "$dir/$name.ext"
done
