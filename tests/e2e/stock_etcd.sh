#!/usr/bin/env bash
# Stock etcd 3.4 bootstraps a 3-member TLS cluster with --discovery-srv against musterd.
#
# Run inside a private network and mount namespace (the Rust test does
# `unshare -n -m bash stock_etcd.sh MUSTERD WORKDIR`): musterd owns 127.0.0.1:53, the
# namespace's /etc/resolv.conf points at it, and the members live on 127.0.0.11-13.
# Nothing leaves the namespace. Every process started here is stopped by PID on exit.
set -euo pipefail
MUSTERD=$1
W=$2
D=etcd.test
cd "$W"

pids=()
cleanup() {
  # Last started first, so members stop one at a time (a leader stopping together with
  # its peers spends seconds handing over) and musterd stops last.
  for ((k = ${#pids[@]} - 1; k >= 0; k--)); do
    kill "${pids[$k]}" 2>/dev/null || true
    wait "${pids[$k]}" 2>/dev/null || true
  done
}
trap cleanup EXIT

ip link set lo up
for i in 1 2 3; do ip addr add "127.0.0.1$i/8" dev lo; done
echo "nameserver 127.0.0.1" > resolv.conf
printf '127.0.0.1 localhost\n::1 localhost\n' > hosts
mount --bind resolv.conf /etc/resolv.conf
mount --bind hosts /etc/hosts

cat > "$D.zone" <<EOF
\$ORIGIN $D.
\$TTL 5
@   300 IN SOA ns1 hostmaster 1 3600 600 86400 5
@   300 IN NS  ns1
ns1     IN A   127.0.0.1
_etcd-server-ssl._tcp IN SRV 0 0 2380 m1
                      IN SRV 0 0 2380 m2
                      IN SRV 0 0 2380 m3
_etcd-client-ssl._tcp IN SRV 0 0 2379 m1
                      IN SRV 0 0 2379 m2
                      IN SRV 0 0 2379 m3
m1 IN A 127.0.0.11
m2 IN A 127.0.0.12
m3 IN A 127.0.0.13
EOF
cat > 11.0.0.127.zone <<EOF
\$ORIGIN 0.0.127.in-addr.arpa.
\$TTL 5
@   300 IN SOA ns1.$D. hostmaster.$D. 1 3600 600 86400 5
@   300 IN NS  ns1.$D.
11 IN PTR m1.$D.
12 IN PTR m2.$D.
13 IN PTR m3.$D.
EOF

"$MUSTERD" check "$D.zone" > check.txt || { cat check.txt; exit 1; }

# Certificates: a CA, and per member a certificate for both peer and client use with the
# member's name, the bare domain (3.4 verifies peers against it), its address and
# 127.0.0.1 (loopback peers connect from there) as SANs.
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 \
  -subj /CN=muster-test-ca 2>/dev/null
for i in 1 2 3; do
  openssl req -newkey rsa:2048 -nodes -keyout "m$i.key" -out "m$i.csr" -subj "/CN=m$i.$D" 2>/dev/null
  printf 'subjectAltName=DNS:m%s.%s,DNS:%s,IP:127.0.0.1%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$i" "$D" "$D" "$i" > "m$i.ext"
  openssl x509 -req -in "m$i.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "m$i.pem" \
    -days 1 -extfile "m$i.ext" 2>/dev/null
done

"$MUSTERD" serve --listen 127.0.0.1:53 --zone "$D.=$D.zone" \
  --zone "0.0.127.in-addr.arpa.=11.0.0.127.zone" 2> musterd.log &
pids+=($!)
for _ in $(seq 100); do
  if dig +time=1 +tries=1 "m3.$D" A | grep -q "^m3.$D.*127.0.0.13"; then break; fi
  sleep 0.1
done
dig "_etcd-server-ssl._tcp.$D" SRV | grep -q "ANSWER: 3" || { echo "musterd is not answering"; cat musterd.log; exit 1; }

start_member() {
  local i=$1
  etcd --name "m$i" --data-dir "m$i.data" --discovery-srv "$D" \
    --initial-advertise-peer-urls "https://m$i.$D:2380" \
    --listen-peer-urls "https://127.0.0.1$i:2380" \
    --listen-client-urls "https://127.0.0.1$i:2379" \
    --advertise-client-urls "https://m$i.$D:2379" \
    --initial-cluster-token tkn --initial-cluster-state new \
    --peer-cert-file "m$i.pem" --peer-key-file "m$i.key" --peer-trusted-ca-file ca.pem \
    --peer-client-cert-auth \
    --cert-file "m$i.pem" --key-file "m$i.key" --trusted-ca-file ca.pem \
    --heartbeat-interval 50 --election-timeout 500 > "m$i.log" 2>&1 &
  pids+=($!)
}
# All three at the same moment, as a real bootstrap does.
start_member 1
start_member 2
start_member 3

ctl() {
  ETCDCTL_API=3 etcdctl --discovery-srv "$D" --cacert ca.pem --cert m1.pem --key m1.key \
    --dial-timeout 2s --command-timeout 3s "$@"
}
healthy=0
for _ in $(seq 60); do
  if out=$(ctl endpoint health --cluster 2>&1) && [ "$(grep -c 'is healthy' <<<"$out")" = 3 ]; then
    healthy=1
    break
  fi
  sleep 1
done
if [ "$healthy" != 1 ]; then
  echo "cluster did not become healthy; last etcdctl output:"; echo "${out:-}"
  for i in 1 2 3; do echo "== m$i.log"; tail -20 "m$i.log"; done
  echo "== musterd.log"; cat musterd.log
  exit 1
fi
echo "$out"
members=$(ctl member list)
echo "$members"
[ "$(grep -c started <<<"$members")" = 3 ] || { echo "expected 3 started members"; exit 1; }
echo "STOCK-ETCD-OK"
