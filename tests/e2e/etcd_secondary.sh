#!/usr/bin/env bash
# Stock etcd 3.4 bootstraps with --discovery-srv while its resolver points at a musterd
# SECONDARY that copied the zones from a musterd primary by zone transfer.
#
# Usage (as root; tests/tests/etcd_stock.rs runs it):
#   MUSTER_OUTER_MNT_NS=$(readlink /proc/self/ns/mnt) \
#     unshare -n -m [-p -f --kill-child] bash tests/e2e/etcd_secondary.sh MUSTERD WORKDIR
#
# Everything but the DNS servers comes from etcd_stock.sh (namespaces check, network,
# zones, certificates, the members and their checks). Here the primary serves the zone
# files on 127.0.0.2:5300 (not in resolv.conf), allows transfers to 127.0.0.0/8 and
# notifies 127.0.0.1:53; the secondary on 127.0.0.1:53 (in resolv.conf) has no zone file,
# only --secondary ZONE=127.0.0.2:5300 and a state directory. Before any member starts,
# the secondary must have pulled both zones (its startup transfer), serve the primary's
# serial authoritatively, and hand out a copy equal to the primary's.
#
# Then a change on the primary (zone edit + SIGHUP) must reach the secondary through NOTIFY
# within seconds (its SOA refresh timer is an hour): the NOTIFY leaves from the primary's
# listen address, 127.0.0.2, which is the only source the secondary accepts it from.
# Prints ETCD-SECONDARY-OK on success.
set -euo pipefail

ZONE_SERIAL=2024061507 # distinct from anything a default would give
source "$(dirname "${BASH_SOURCE[0]}")/etcd_stock.sh"

PRIMARY=127.0.0.2
PPORT=5300
REV=0.0.127.in-addr.arpa
LOGS=(primary.log secondary.log m1.log m2.log m3.log)

begin "$@"
setup_network
ip addr add "$PRIMARY/8" dev lo
write_zones
make_certs

# Sorted answer records of an AXFR, without the TTL-independent noise dig adds.
axfr() {
  dig +time=2 +tries=1 +nocmd +nostats +nocomments "@$1" -p "$2" "$3." AXFR | grep -v '^;' | grep . | sort
}
# The serial of zone $3 at $1 port $2, or nothing: a server that is not listening yet is
# not an error here (dig exits 9 and prints ";; communications error", whose third word
# is not a serial).
soa_serial() {
  { dig +time=1 +tries=1 +short "@$1" -p "$2" "$3." SOA 2>/dev/null || true; } |
    awk '!/^;/ && NF == 7 { print $3 }'
}

# --- the primary: zone files, not in resolv.conf ------------------------------------------
RUST_LOG=info "$MUSTERD" serve --listen "$PRIMARY:$PPORT" --query-log --watch-interval 0s \
  --zone "$D.=$D.zone" --zone "$REV.=rev.zone" \
  --allow-transfer "$D.=127.0.0.0/8" --allow-transfer "$REV.=127.0.0.0/8" \
  --notify "$D.=127.0.0.1:53" --notify "$REV.=127.0.0.1:53" 2>primary.log &
pids+=($!)
names+=(primary)
primary_pid=$!
up=0
for _ in $(seq 100); do
  kill -0 "$primary_pid" 2>/dev/null || fail "the primary exited"
  if [ "$(soa_serial "$PRIMARY" "$PPORT" "$D")" = "$ZONE_SERIAL" ]; then
    up=1
    break
  fi
  sleep 0.1
done
[ "$up" = 1 ] || fail "the primary does not serve $D serial $ZONE_SERIAL within 10 s"

# --- the secondary: no zone file, on 127.0.0.1:53 -----------------------------------------
RUST_LOG=info "$MUSTERD" serve --listen 127.0.0.1:53 --query-log --state-dir state \
  --secondary "$D.=$PRIMARY:$PPORT" --secondary "$REV.=$PRIMARY:$PPORT" \
  --allow-transfer "$D.=127.0.0.0/8" 2>secondary.log &
pids+=($!)
names+=(secondary)
secondary_pid=$!
got=""
for _ in $(seq 100); do
  kill -0 "$secondary_pid" 2>/dev/null || fail "the secondary exited"
  got=$(soa_serial 127.0.0.1 53 "$D")
  [ "$got" = "$ZONE_SERIAL" ] && [ "$(soa_serial 127.0.0.1 53 "$REV")" = "$ZONE_SERIAL" ] && break
  sleep 0.1
done
[ "$got" = "$ZONE_SERIAL" ] ||
  fail "the secondary serves $D serial '${got}', not the primary's $ZONE_SERIAL, after 10 s"
for z in "$D" "$REV"; do
  grep -q "secondary zone refreshed zone=$z\. serial=$ZONE_SERIAL kind=\"axfr\"" secondary.log ||
    fail "the secondary logged no transfer of $z"
  grep -q "zone transfer out peer=127\.0\.0\.1:[0-9]* zone=$z\. serial=$ZONE_SERIAL" primary.log ||
    fail "the primary logged no transfer of $z"
done
dig +time=1 +tries=1 @127.0.0.1 "_etcd-server-ssl._tcp.$D" SRV | grep -q "flags: qr aa" ||
  fail "the secondary's answer is not authoritative"
echo "== secondary on 127.0.0.1:53 serves $D and $REV at the primary's serial $ZONE_SERIAL"
# The secondary's copy is the primary's, record for record.
want=$(axfr "$PRIMARY" "$PPORT" "$D")
have=$(axfr 127.0.0.1 53 "$D")
[ "$(grep -c . <<<"$want")" -ge 12 ] || fail "AXFR from the primary: $want"
[ "$want" = "$have" ] || {
  diff <(echo "$want") <(echo "$have") || true
  fail "the secondary's copy of $D differs from the primary's"
}
echo "== AXFR $D: secondary = primary ($(grep -c . <<<"$have") records)"
[ -s "state/$D.secondary.zone" ] || fail "the secondary kept no copy in state/: $(ls -A state)"
wait_resolver "$secondary_pid" secondary

# --- a change on the primary reaches the secondary through NOTIFY --------------------------
NEXT=$((ZONE_SERIAL + 1))
sed -i "s/$ZONE_SERIAL/$NEXT/" "$D.zone"
grep -q "$NEXT" "$D.zone" || fail "could not raise the serial in $D.zone"
kill -HUP "$primary_pid"
got=""
for _ in $(seq 100); do
  got=$(soa_serial 127.0.0.1 53 "$D")
  [ "$got" = "$NEXT" ] && break
  sleep 0.1
done
[ "$got" = "$NEXT" ] || {
  grep -i notify primary.log secondary.log | tail -5 || true
  fail "the secondary serves $D serial '${got}' 10 s after the primary moved to $NEXT (NOTIFY lost?)"
}
grep -q "NOTIFY refused" secondary.log && fail "the secondary refused a NOTIFY from its primary"
echo "== a change on the primary reached the secondary through NOTIFY (serial $NEXT)"

bootstrap_and_verify

# The members and etcdctl asked the secondary; the primary saw none of their queries.
check_query_log secondary.log
if grep -q "qtype=SRV" primary.log; then
  grep "qtype=SRV" primary.log | head -5
  fail "the primary answered SRV queries: etcd did not use the secondary alone"
fi

echo "ETCD-SECONDARY-OK bootstrap_seconds=$took serial=$ZONE_SERIAL"
