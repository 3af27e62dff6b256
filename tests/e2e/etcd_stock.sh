#!/usr/bin/env bash
# Stock etcd 3.4 bootstraps a 3-member TLS cluster with --discovery-srv against musterd,
# and etcdctl --discovery-srv finds every member healthy.
#
# Usage (as root; tests/tests/etcd_stock.rs runs it):
#   MUSTER_OUTER_MNT_NS=$(readlink /proc/self/ns/mnt) \
#     unshare -n -m [-p -f --kill-child] bash tests/e2e/etcd_stock.sh MUSTERD WORKDIR
#
# Inside the private network and mount namespace: lo is brought up with 127.0.0.11-13,
# musterd owns 127.0.0.1:53, and bind-mounted /etc/resolv.conf and /etc/hosts make the
# system resolver (Go's, glibc's) ask musterd. Nothing leaves the namespace. Everything
# is written under WORKDIR. Every wait is bounded; on failure all logs are printed.
# Prints ETCD-STOCK-OK on success.
#
# Sourced (tests/e2e/etcd_secondary.sh does), it only defines the steps; main runs them
# when the script is executed.
set -euo pipefail

D=etcd.test
# The zones' SOA serial.
ZONE_SERIAL=${ZONE_SERIAL:-1}
# The cluster ID etcd 3.4 derives from three https://mN.etcd.test:2380 members and token
# "tkn" (observed with etcd 3.4.23; see docs/etcd-discovery.md §3): every member built byte-identical
# URL strings and the same token.
WANT_CLUSTER_ID=15172527772512277119
BOOTSTRAP_LIMIT=60

# Refuse to touch the host's network and resolver: this must run in namespaces of its
# own. A fresh network namespace has only lo, and lo is still down. The mount namespace
# must differ from the caller's (MUSTER_OUTER_MNT_NS, passed by the Rust test) or, when
# that is not given, from PID 1's.
refuse() {
  echo "$(basename "$0"): $*" >&2
  echo "run me as: MUSTER_OUTER_MNT_NS=\$(readlink /proc/self/ns/mnt) unshare -n -m bash $0 MUSTERD WORKDIR" >&2
  exit 2
}
require_namespaces() {
  local links own_mnt outer_mnt
  links=$(ip -o link show)
  [ "$(wc -l <<<"$links")" = 1 ] && grep -q '^1: lo: .*state DOWN' <<<"$links" ||
    refuse "not in a fresh network namespace (expected only lo, down)"
  own_mnt=$(readlink /proc/self/ns/mnt)
  outer_mnt=${MUSTER_OUTER_MNT_NS:-$(readlink /proc/1/ns/mnt 2>/dev/null || true)}
  [ -n "$outer_mnt" ] || refuse "cannot tell whether the mount namespace is private"
  [ "$own_mnt" != "$outer_mnt" ] || refuse "not in a private mount namespace"
}

names=()   # what each entry of pids is, for messages
pids=()    # everything started, stopped newest first
members=() # the etcd members' pids
LOGS=(musterd.log m1.log m2.log m3.log)

dump_logs() {
  for f in "${LOGS[@]}"; do
    [ -f "$f" ] || continue
    echo "===== $f (last 60 lines)"
    tail -n 60 "$f"
  done
}

# Stops one process: SIGTERM, up to 10 s, then SIGKILL.
stop_pid() {
  local pid=$1 name=$2
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name did not stop within 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Members one at a time, newest first (a leader stopped together with its peers spends
  # seconds handing over leadership), the DNS servers (started first) last.
  for ((k = ${#pids[@]} - 1; k >= 0; k--)); do
    stop_pid "${pids[$k]}" "${names[$k]}"
  done
  if [ "$status" != 0 ]; then
    echo "$(basename "$0") FAILED (status $status)"
    dump_logs
  fi
  exit "$status"
}

fail() {
  echo "FAIL: $*"
  exit 1
}

# Checks the namespaces, goes to WORKDIR, and stops everything started on any exit.
begin() {
  MUSTERD=${1:?usage: $(basename "$0") MUSTERD WORKDIR}
  W=${2:?usage: $(basename "$0") MUSTERD WORKDIR}
  require_namespaces
  MUSTERD=$(realpath "$MUSTERD")
  cd "$W"
  trap cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
}

# --- network and resolver ---------------------------------------------------------------
setup_network() {
  ip link set lo up
  for i in 1 2 3; do ip addr add "127.0.0.1$i/8" dev lo; done
  echo "nameserver 127.0.0.1" >resolv.conf
  # No line for the domain: names must come from DNS (Debian's "127.0.1.1 <fqdn>" line
  # would win over DNS and break etcd's self-matching).
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >hosts
  mount --bind resolv.conf /etc/resolv.conf
  mount --bind hosts /etc/hosts
}

# --- zones ------------------------------------------------------------------------------
write_zones() {
  cat >"$D.zone" <<EOF
\$ORIGIN $D.
\$TTL 5
@   300 IN SOA ns1 hostmaster $ZONE_SERIAL 3600 600 86400 5
@   300 IN NS  ns1
ns1     IN A   127.0.0.1
; etcd 3.4 peers read only the -ssl records (etcd-io/etcd#11321); etcdctl reads the
; client ones.
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
  # PTRs for the member addresses (etcd may check a peer's certificate through them).
  cat >rev.zone <<EOF
\$ORIGIN 0.0.127.in-addr.arpa.
\$TTL 5
@   300 IN SOA ns1.$D. hostmaster.$D. $ZONE_SERIAL 3600 600 86400 5
@   300 IN NS  ns1.$D.
11 IN PTR m1.$D.
12 IN PTR m2.$D.
13 IN PTR m3.$D.
EOF
  "$MUSTERD" check --origin "$D." "$D.zone" >check.txt 2>&1 || {
    cat check.txt
    fail "musterd check rejects $D.zone"
  }
}

# --- certificates -----------------------------------------------------------------------
# A CA, and per member one certificate for peer and client use. SANs: the member's name,
# the bare domain (3.4 verifies peers against it), the member's address, and 127.0.0.1
# (members on loopback connect to each other from there).
make_certs() {
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj /CN=muster-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    >openssl.log 2>&1 || { cat openssl.log; fail "openssl: CA"; }
  for i in 1 2 3; do
    openssl req "${ec[@]}" -keyout "m$i.key" -out "m$i.csr" -subj "/CN=m$i.$D" \
      >>openssl.log 2>&1 || { cat openssl.log; fail "openssl: m$i request"; }
    cat >"m$i.ext" <<EOF
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:m$i.$D, DNS:$D, IP:127.0.0.1$i, IP:127.0.0.1
EOF
    openssl x509 -req -in "m$i.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -out "m$i.pem" -extfile "m$i.ext" >>openssl.log 2>&1 ||
      { cat openssl.log; fail "openssl: m$i certificate"; }
  done
}

# --- the server in resolv.conf ----------------------------------------------------------
# Waits (10 s at most) until the server on 127.0.0.1:53 (process PID, called NAME) gives
# the peers' SRV answer, and checks glibc's resolver sees the zone too.
wait_resolver() {
  local pid=$1 name=$2 up=0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || fail "$name exited"
    # Through the bind-mounted resolv.conf, as etcd will ask. Look for a real answer:
    # dig +short prints error text on stdout too.
    if dig +time=1 +tries=1 +short "_etcd-server-ssl._tcp.$D" SRV 2>/dev/null |
      grep -q "^0 0 2380 m3\.$D\.$"; then
      up=1
      break
    fi
    sleep 0.1
  done
  [ "$up" = 1 ] || fail "$name does not answer on 127.0.0.1:53 within 10 s"
  getent hosts "m2.$D" | grep -q '^127\.0\.0\.12 ' || fail "getent hosts m2.$D: $(getent hosts "m2.$D")"
}

# --- three stock etcd members, started together -----------------------------------------
start_member() {
  local i=$1
  etcd --name "m$i" --data-dir "m$i.data" \
    --discovery-srv "$D" \
    --initial-advertise-peer-urls "https://m$i.$D:2380" \
    --listen-peer-urls "https://127.0.0.1$i:2380" \
    --listen-client-urls "https://127.0.0.1$i:2379" \
    --advertise-client-urls "https://m$i.$D:2379" \
    --initial-cluster-token tkn --initial-cluster-state new \
    --peer-cert-file "m$i.pem" --peer-key-file "m$i.key" --peer-trusted-ca-file ca.pem \
    --peer-client-cert-auth \
    --cert-file "m$i.pem" --key-file "m$i.key" --trusted-ca-file ca.pem \
    >"m$i.log" 2>&1 &
  pids+=($!)
  names+=("m$i")
  members+=($!)
}

# With --trusted-ca-file, etcd 3.4 asks clients for a certificate (seen: "tls: client
# didn't provide a certificate" without one), so etcdctl presents m1's.
ctl() {
  ETCDCTL_API=3 timeout 15 etcdctl --discovery-srv "$D" \
    --cacert ca.pem --cert m1.pem --key m1.key \
    --dial-timeout 2s --command-timeout 5s "$@"
}

# Starts the members, waits until etcdctl --discovery-srv finds all three healthy, then
# checks membership, the cluster ID, a write read back, and the members' logs. Sets took.
bootstrap_and_verify() {
  local healthy=0 out="" list cluster_id start=$SECONDS
  start_member 1
  start_member 2
  start_member 3
  while ((SECONDS - start < BOOTSTRAP_LIMIT)); do
    for k in 0 1 2; do
      kill -0 "${members[$k]}" 2>/dev/null || fail "m$((k + 1)) exited during bootstrap"
    done
    # --cluster: without it etcdctl ignores the SRV records and checks 127.0.0.1:2379.
    if out=$(ctl endpoint health --cluster 2>&1) &&
      [ "$(grep -c ' is healthy' <<<"$out")" = 3 ]; then
      healthy=1
      break
    fi
    sleep 0.5
  done
  took=$((SECONDS - start))
  if [ "$healthy" != 1 ]; then
    echo "last etcdctl endpoint health --cluster output:"
    echo "$out"
    fail "the cluster was not healthy within $BOOTSTRAP_LIMIT s"
  fi
  echo "== endpoint health --cluster (after ${took}s)"
  echo "$out"
  for i in 1 2 3; do
    grep -q "^https://m$i\.$D:2379 is healthy" <<<"$out" || fail "m$i is not healthy"
  done

  # Membership as etcd recorded it.
  list=$(ctl member list)
  echo "== member list"
  echo "$list"
  [ "$(grep -c ', started, ' <<<"$list")" = 3 ] || fail "expected 3 started members"
  for i in 1 2 3; do
    grep -q ", started, m$i, https://m$i\.$D:2380, https://m$i\.$D:2379, false$" <<<"$list" ||
      fail "member m$i is missing or has other URLs"
  done
  cluster_id=$(ctl member list -w json | grep -o '"cluster_id":[0-9]*' | cut -d: -f2 || true)
  echo "cluster_id=$cluster_id"
  [ "$cluster_id" = "$WANT_CLUSTER_ID" ] ||
    fail "cluster ID $cluster_id, expected $WANT_CLUSTER_ID (members built different URLs?)"

  # A write through one member is read back through the client SRV records.
  ETCDCTL_API=3 timeout 15 etcdctl --endpoints "https://m3.$D:2379" \
    --cacert ca.pem --cert m3.pem --key m3.key --dial-timeout 2s --command-timeout 5s put muster ok >/dev/null || fail "put via m3"
  [ "$(ctl get --print-value-only muster)" = ok ] || fail "get via --discovery-srv"

  for i in 1 2 3; do
    if grep -Eq "cluster ID mismatch|cannot find local etcd member|bad certificate" "m$i.log"; then
      grep -E "cluster ID mismatch|cannot find local etcd member|bad certificate" "m$i.log" | head -5
      fail "m$i logged a bootstrap error"
    fi
  done
}

# --- what the members asked ---------------------------------------------------------------
# LOG is the query log of the server in resolv.conf.
check_query_log() {
  local log=$1
  grep -q "name=_etcd-server-ssl._tcp.$D.* qtype=SRV" "$log" ||
    fail "$log never saw the peers' SRV query; did etcd use another resolver?"
  grep -q "name=_etcd-client-ssl._tcp.$D.* qtype=SRV" "$log" ||
    fail "$log never saw etcdctl's SRV query"
}

main() {
  begin "$@"
  setup_network
  write_zones
  make_certs
  # musterd on port 53.
  RUST_LOG=info "$MUSTERD" serve --listen 127.0.0.1:53 --query-log --watch-interval 0s \
    --zone "$D.=$D.zone" --zone "0.0.127.in-addr.arpa.=rev.zone" 2>musterd.log &
  pids+=($!)
  names+=(musterd)
  wait_resolver "$!" musterd
  bootstrap_and_verify
  check_query_log musterd.log
  echo "ETCD-STOCK-OK bootstrap_seconds=$took"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
