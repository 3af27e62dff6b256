#!/usr/bin/env bash
# Stock etcd 3.4 --discovery-srv against musterd while the records are published one by
# one (docs/completeness-gate.md):
#   phase "ungated" (no muster-size TXT): m1 and m2 have addresses, m3 not yet. m1 and m2
#     bootstrap a 2-member cluster; once m3's address is published, m3 builds a 3-member
#     cluster of its own and can never join: the split this gate prevents.
#   phase "gated" (TXT "muster-size=3"): the same order of publication. musterd withholds
#     the SRV set, every etcd start fails until m3's address is published; restarted (as
#     systemd would), the three members form one healthy 3-member cluster.
# Each member runs under a restart loop like systemd's Restart=on-failure, RestartSec=1.
#
# Usage (as root; tests/tests/gate.rs runs it):
#   MUSTER_OUTER_MNT_NS=$(readlink /proc/self/ns/mnt) \
#     unshare -n -m -p -f --kill-child bash tests/e2e/gate_etcd.sh MUSTERD WORKDIR [PHASES]
# PHASES: "ungated gated" (default) or one of them. Runs only in fresh namespaces (as
# tests/e2e/etcd_stock.sh); nothing leaves them. Prints GATE-ETCD-OK on success.
set -euo pipefail

MUSTERD=${1:?usage: gate_etcd.sh MUSTERD WORKDIR [PHASES]}
W=${2:?usage: gate_etcd.sh MUSTERD WORKDIR [PHASES]}
PHASES=${3:-ungated gated}
D=etcd.test
LIMIT=30 # seconds for each wait below

refuse() {
  echo "gate_etcd.sh: $*" >&2
  exit 2
}
links=$(ip -o link show)
[ "$(wc -l <<<"$links")" = 1 ] && grep -q '^1: lo: .*state DOWN' <<<"$links" ||
  refuse "not in a fresh network namespace (expected only lo, down)"
own_mnt=$(readlink /proc/self/ns/mnt)
outer_mnt=${MUSTER_OUTER_MNT_NS:-$(readlink /proc/1/ns/mnt 2>/dev/null || true)}
[ -n "$outer_mnt" ] || refuse "cannot tell whether the mount namespace is private"
[ "$own_mnt" != "$outer_mnt" ] || refuse "not in a private mount namespace"

MUSTERD=$(realpath "$MUSTERD")
cd "$W"
declare -A pid_of=() # name -> PID of a member's restart loop, or of musterd

dump_logs() {
  for f in musterd.log *.m?.log; do
    [ -f "$f" ] || continue
    echo "===== $f (last 40 lines)"
    tail -n 40 "$f"
  done
}

# Stops the named restart loops or processes and what they run: the loops first, with
# SIGKILL (so they start nothing new), then their children with SIGTERM, all at once (a
# member stopped alone waits for its peers), SIGKILL after 10 s.
stop() {
  local name pid kids=() all=()
  for name in "$@"; do
    pid=${pid_of[$name]:-}
    [ -n "$pid" ] || continue
    unset "pid_of[$name]"
    if [ "$name" = musterd ]; then
      all+=("$pid")
      continue
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # The loop's current etcd (/proc is the outer PID namespace's, so no pgrep -P).
    [ -f "$name.pid" ] && kids+=("$(cat "$name.pid")")
  done
  all+=("${kids[@]}")
  [ "${#all[@]}" -gt 0 ] || return 0
  kill -TERM "${all[@]}" 2>/dev/null || true
  for _ in $(seq 100); do
    local alive=0
    for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "${all[@]}" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop m1 m2 m3
  stop musterd
  if [ "$status" != 0 ]; then
    echo "gate_etcd.sh FAILED (status $status)"
    dump_logs
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

fail() {
  echo "FAIL: $*"
  exit 1
}

# Waits up to LIMIT seconds for a command to succeed.
wait_for() {
  local what=$1
  shift
  local start=$SECONDS
  until "$@"; do
    ((SECONDS - start < LIMIT)) || fail "$what: not within $LIMIT s"
    sleep 0.2
  done
}

ip link set lo up
for i in 1 2 3; do ip addr add "127.0.0.1$i/8" dev lo; done
echo "nameserver 127.0.0.1" >resolv.conf
printf '127.0.0.1\tlocalhost\n' >hosts
mount --bind resolv.conf /etc/resolv.conf
mount --bind hosts /etc/hosts

SERIAL=1
# Writes the zone: $1 = "gated" or "ungated", $2 = the members with an address.
zone() {
  local gated=$1 addressed=$2
  SERIAL=$((SERIAL + 1))
  {
    echo "\$ORIGIN $D."
    echo "\$TTL 5"
    echo "@ 300 IN SOA ns1 hostmaster $SERIAL 3600 600 86400 5"
    echo "@ 300 IN NS ns1"
    echo "ns1 IN A 127.0.0.1"
    [ "$gated" = gated ] && echo '_etcd-server-ssl._tcp IN TXT "muster-size=3"'
    for i in 1 2 3; do echo "_etcd-server-ssl._tcp IN SRV 0 0 2380 m$i"; done
    for i in $addressed; do echo "m$i IN A 127.0.0.1$i"; done
  } >"$D.zone.new"
  mv "$D.zone.new" "$D.zone"
}

srv() { dig +time=1 +tries=1 +short "_etcd-server-ssl._tcp.$D" SRV 2>/dev/null | grep -c ' 2380 ' || true; }
serial_is() { dig +time=1 +tries=1 +short "$D" SOA 2>/dev/null | grep -q " hostmaster.$D. $1 "; }

# Publishes a new version of the zone and waits until musterd serves it.
publish() {
  zone "$@"
  kill -HUP "${pid_of[musterd]}"
  wait_for "musterd serving serial $SERIAL" serial_is "$SERIAL"
}

zone ungated "1 2"
RUST_LOG=info "$MUSTERD" serve --listen 127.0.0.1:53 --query-log --watch-interval 0s \
  --zone "$D.=$D.zone" 2>musterd.log &
pid_of[musterd]=$!
wait_for "musterd answering on 127.0.0.1:53" serial_is "$SERIAL"

# A member under a restart loop (systemd's Restart=on-failure, RestartSec=1): every
# start is one line in PHASE.mN.starts, its log in PHASE.mN.log.
member() {
  local phase=$1 i=$2
  (
    while :; do
      echo start >>"$phase.m$i.starts"
      etcd --name "m$i" --data-dir "$phase.m$i.data" \
        --discovery-srv "$D" \
        --initial-advertise-peer-urls "https://m$i.$D:2380" \
        --listen-peer-urls "https://127.0.0.1$i:2380" \
        --listen-client-urls "http://127.0.0.1$i:2379" \
        --advertise-client-urls "http://127.0.0.1$i:2379" \
        --initial-cluster-token "$phase" --initial-cluster-state new \
        --peer-auto-tls >>"$phase.m$i.log" 2>&1 &
      echo $! >"m$i.pid"
      wait $! && break
      sleep 1
    done
  ) &
  pid_of[m$i]=$!
}

ctl() { ETCDCTL_API=3 timeout 10 etcdctl --dial-timeout 2s --command-timeout 4s "$@" 2>&1; }
members_via() { ctl --endpoints "http://127.0.0.1$1:2379" member list; }
started_count() { grep -c ', started, ' <<<"$(members_via "$1")" || true; }
healthy() { [ "$(started_count "$1")" = "$2" ]; }
failed_starts() { grep -c 'error setting up initial cluster' "$1" 2>/dev/null || true; }
at_least_failed() { [ "$(failed_starts "$1")" -ge "$2" ]; }

for phase in $PHASES; do
  case $phase in
  ungated)
    echo "== ungated: m1 and m2 have addresses, m3 not yet"
    for i in 1 2 3; do member ungated "$i"; done
    wait_for "m1+m2 forming a cluster" healthy 1 2
    echo "$(members_via 1)"
    [ "$(srv)" = 3 ] || fail "ungated: the SRV set must be served"
    publish ungated "1 2 3"
    echo "== ungated: m3's address published"
    wait_for "m3 refused by the 2-member cluster" grep -q "cluster ID mismatch" ungated.m3.log
    grep -m1 "cluster ID mismatch" ungated.m3.log
    [ "$(started_count 1)" = 2 ] || fail "ungated: expected the 2-member cluster to stay at 2"
    echo "UNGATED-SPLIT: m1+m2 formed a 2-member cluster, m3 cannot join it"
    stop m1 m2 m3
    ;;
  gated)
    echo "== gated: TXT muster-size=3, m1 and m2 have addresses, m3 not yet"
    publish gated "1 2"
    [ "$(srv)" = 0 ] || fail "gated: the incomplete SRV set was served"
    dig +time=1 +tries=1 "_etcd-server-ssl._tcp.$D" SRV >dig-withheld.txt 2>&1 || true
    grep -q "EDE: 14 (Not Ready)" dig-withheld.txt || fail "no EDE 14 in: $(cat dig-withheld.txt)"
    grep -m1 "EDE:" dig-withheld.txt
    for i in 1 2 3; do member gated "$i"; done
    # Every member fails its start at least twice (restarted in between) while the set
    # is incomplete: none forms a 1- or 2-member cluster.
    for i in 1 2; do
      wait_for "m$i failing while the set is incomplete" at_least_failed "gated.m$i.log" 2
    done
    for i in 1 2; do
      grep -q "ready to serve client requests" "gated.m$i.log" && fail "gated: m$i started with an incomplete set"
    done
    grep -m1 "error setting up initial cluster" gated.m1.log
    publish gated "1 2 3"
    echo "== gated: m3's address published; the set is complete"
    [ "$(srv)" = 3 ] || fail "gated: the complete SRV set is not served"
    for i in 1 2 3; do wait_for "m$i a member of a 3-member cluster" healthy "$i" 3; done
    echo "$(members_via 1)"
    ids=$(for i in 1 2 3; do ctl --endpoints "http://127.0.0.1$i:2379" endpoint status -w json | grep -o '"cluster_id":[0-9]*'; done | sort -u)
    [ "$(wc -l <<<"$ids")" = 1 ] || fail "gated: members report different clusters: $ids"
    echo "GATED-ONE-CLUSTER: starts m1=$(wc -l <gated.m1.starts) m2=$(wc -l <gated.m2.starts) m3=$(wc -l <gated.m3.starts), $ids"
    ;;
  *) fail "unknown phase $phase" ;;
  esac
done
grep -q "completeness gate" musterd.log || fail "musterd logged no gate state"
grep "completeness gate" musterd.log | sed 's/^.*completeness gate/completeness gate/' | head -5
echo "GATE-ETCD-OK"
