#!/usr/bin/env python3
"""AXFR of the large benchmark zone: musterd against Knot and NSD in one run.

    tests/bench/xfr_bench.py [--runs 5] [--zones large] [--servers musterd,knot,nsd]

Uses the zones of tests/bench/bench.py (the large one: 10,000 etcd clusters, ~210k
records). Each server is pinned to CPU 0 and allows transfers from 127.0.0.1; `dig AXFR
+noall +stats` on CPU 1 transfers the zone `--runs` times. Reports medians of the wall
time of one transfer, the server CPU it cost (utime+stime from /proc/PID/stat, all
threads and child processes), the messages and octets dig received. A benchmark, not a
test: it never fails CI. Needs target/release/musterd (cargo build --release); servers
that are not installed are left out. Everything runs on 127.0.0.1.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the zones, server factories and /proc helpers)


def with_transfers(name, srv, zone):
    """Lets 127.0.0.1 transfer the zone from `srv`."""
    if name == "musterd":
        srv.argv += ["--allow-transfer", f"{zone['origin']}=127.0.0.1/32"]
        return srv
    conf = srv.argv[srv.argv.index("-c") + 1]
    with open(conf) as f:
        text = f.read()
    if name == "nsd":
        text += "    provide-xfr: 127.0.0.1 NOKEY\n"
    else:
        text = text.replace("zone:\n", "acl:\n  - id: xfr\n    address: 127.0.0.1\n    action: transfer\nzone:\n")
        text += "    acl: xfr\n"
    with open(conf, "w") as f:
        f.write(text)
    return srv


def axfr(port, origin):
    """(seconds, records, messages, octets) of one dig AXFR, dig pinned to CPU 1."""
    t0 = time.monotonic()
    out = subprocess.run(["taskset", "-c", "1", "dig", "@127.0.0.1", "-p", str(port), origin, "AXFR",
                          "+noall", "+stats"], capture_output=True, text=True, check=True).stdout
    took = time.monotonic() - t0
    m = re.search(r"XFR size: (\d+) records \(messages (\d+), bytes (\d+)\)", out)
    if not m:
        raise RuntimeError(f"transfer failed:\n{out}")
    return (took, int(m.group(1)), int(m.group(2)), int(m.group(3)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--zones", default="large")
    ap.add_argument("--servers", default="musterd,knot,nsd")
    args = ap.parse_args()
    musterd_bin = os.path.join(bench.ROOT, "target", "release", "musterd")
    if not os.path.exists(musterd_bin):
        sys.exit("build musterd first: cargo build --release -p muster-server --bin musterd")
    factories = {"musterd": bench.musterd, "knot": bench.knot, "nsd": bench.nsd}
    programs = {"musterd": musterd_bin, "knot": "knotd", "nsd": "nsd"}
    with tempfile.TemporaryDirectory(prefix="muster-xfr-bench-") as work:
        zones = bench.make_zones(work)
        rows = []
        for key in args.zones.split(","):
            zone = zones[key]
            for name in args.servers.split(","):
                if not os.path.exists(programs[name]) and not any(
                        os.path.exists(os.path.join(p, programs[name])) for p in os.environ["PATH"].split(":")):
                    print(f"{name}: not installed, left out", file=sys.stderr)
                    continue
                port = bench.free_port()
                srv = with_transfers(name, factories[name](work, zone, port), zone)
                srv.start(zone["last"])
                try:
                    axfr(port, zone["origin"])  # warm-up
                    samples = []
                    for _ in range(args.runs):
                        cpu0 = bench.cpu_seconds(srv.proc.pid)
                        took, records, messages, octets = axfr(port, zone["origin"])
                        time.sleep(0.2)  # let the server's CPU accounting settle
                        cpu = bench.cpu_seconds(srv.proc.pid) - cpu0
                        samples.append((took, cpu, records, messages, octets))
                finally:
                    srv.stop()
                rows.append((key, name, zone["records"], statistics.median(s[0] for s in samples),
                             statistics.median(s[1] for s in samples), samples[-1][2], samples[-1][3],
                             samples[-1][4]))
                print(f"{name} {key}: {rows[-1][3]:.3f} s", file=sys.stderr)
        print("| zone | server | zone records | AXFR wall s (median) | server CPU s | records | messages | octets |")
        print("|---|---|---|---|---|---|---|---|")
        for key, name, n, took, cpu, records, messages, octets in rows:
            print(f"| {key} | {name} | {n} | {took:.3f} | {cpu:.3f} | {records} | {messages} | {octets} |")


if __name__ == "__main__":
    main()
