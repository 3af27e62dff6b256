#!/usr/bin/env bash
# A UDP reply larger than the link MTU becomes a TC reply, and dig gets the whole answer
# over TCP. musterd sends UDP with DF set (IP_PMTUDISC_PROBE), so the kernel refuses such
# a datagram instead of fragmenting it; without the TC fallback the client would hear
# nothing and time out.
#
# Usage (as root; tests/tests/udp_mtu.rs runs it):
#   unshare -n bash tests/e2e/udp_mtu.sh MUSTERD WORKDIR
#
# Inside a fresh network namespace: lo is brought up with MTU 1280 and musterd is told it
# may send UDP replies up to 4096 octets. Prints UDP-MTU-OK on success.
set -euo pipefail

MUSTERD=${1:?usage: udp_mtu.sh MUSTERD WORKDIR}
W=${2:?usage: udp_mtu.sh MUSTERD WORKDIR}

# Refuse to touch the host's network: a fresh network namespace has only lo, down.
links=$(ip -o link show)
if ! { [ "$(wc -l <<<"$links")" = 1 ] && grep -q '^1: lo: .*state DOWN' <<<"$links"; }; then
  echo "udp_mtu.sh: not in a fresh network namespace; run me as: unshare -n bash $0 MUSTERD WORKDIR" >&2
  exit 2
fi
ip link set lo mtu 1280 up

MUSTERD=$(realpath "$MUSTERD")
cd "$W"
chunk=$(printf 'a%.0s' $(seq 200))
{
  echo '$ORIGIN big.test.'
  echo '$TTL 30'
  echo '@ IN SOA ns1 hostmaster 1 3600 600 86400 60'
  echo '@ IN NS ns1'
  echo 'ns1 IN A 127.0.0.1'
  echo 'small IN A 10.0.0.1'
  # About 2,000 octets of TXT: over the MTU, under the 4096 the server may send.
  printf 'big IN TXT'
  for _ in $(seq 10); do printf ' "%s"' "$chunk"; done
  echo
} >big.test.zone

"$MUSTERD" serve --listen 127.0.0.1:5300 --zone big.test.=big.test.zone \
  --max-udp-payload 4096 --watch-interval 0s >musterd.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  dig +short +tries=1 +time=1 -p 5300 @127.0.0.1 small.big.test A | grep -q 10.0.0.1 && break
  sleep 0.1
done

fail() {
  echo "FAIL: $*"
  echo "===== musterd.log"
  cat musterd.log
  exit 1
}

# UDP only (+ignore: no retry over TCP): the reply must arrive, with TC and no records.
udp=$(dig +norec +bufsize=4096 +ignore +tries=1 +time=2 -p 5300 @127.0.0.1 big.big.test TXT) ||
  fail "no UDP reply at all (the oversized reply was dropped):"$'\n'"$udp"
echo "$udp"
grep -q 'flags: qr aa tc' <<<"$udp" || fail "UDP reply without TC"
grep -q 'ANSWER: 0,' <<<"$udp" || fail "a truncated reply must carry no answer"
grep -q 'OPT PSEUDOSECTION' <<<"$udp" || fail "the truncated reply lost its OPT record"

# A normal client retries over TCP and gets the whole RRset.
full=$(dig +norec +bufsize=4096 +tries=1 +time=2 -p 5300 @127.0.0.1 big.big.test TXT) ||
  fail "dig failed: $full"
echo "$full"
grep -q 'ANSWER: 1,' <<<"$full" || fail "no answer over TCP"
grep -q 'Truncated, retrying in TCP mode' <<<"$full" || fail "dig did not see TC over UDP"

# Replies that fit still go out whole over UDP.
fits=$(dig +norec +bufsize=4096 +ignore +tries=1 +time=2 -p 5300 @127.0.0.1 small.big.test A)
grep -q 'flags: qr aa;' <<<"$fits" && grep -q 'ANSWER: 1,' <<<"$fits" || fail "small reply: $fits"
echo UDP-MTU-OK
