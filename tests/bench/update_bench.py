#!/usr/bin/env python3
"""Dynamic update benchmark: acknowledged, durable, TSIG-signed RFC 2136 updates per second,
musterd against Knot DNS on the same machine in the same run.

    tests/bench/update_bench.py [--seconds 10] [--out DIR] [--servers musterd,knot,knot-sync60]

For each server: the small zone (one 3-member cluster) and the large zone (10,000 clusters,
~210k records, generated as tests/bench/bench.py does), each update adding one A record
to a new name, signed with hmac-sha256, over UDP on 127.0.0.1:
  - one at a time: the next update is sent when the previous one is answered;
  - 50 in flight: 50 clients, each sending its next update when its last is answered.
An update counts only when answered NOERROR: musterd answers after the journal record is
fsynced; Knot after its journal (LMDB) commit. Knot runs twice: `knot` with its shipped
defaults (zone file written back at once, zonefile-sync: 0) and `knot-sync60` with its
zone-file flush delayed like musterd's write-back (zonefile-sync: 60, musterd's default
update.writeback_interval). All keep their state under the same --out
directory (by default a temporary directory under /tmp). It also reports how long a
full load of the large zone takes (start to the first answer for its last name), the
cost a rebuild-per-update design is compared with.

It is a benchmark, not a test: it never fails CI. Knot is left out when not installed.
Everything runs on 127.0.0.1; every server is stopped by PID.
"""

import argparse
import base64
import hashlib
import hmac
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (zone generator, server start/stop helpers)

KEY_NAME = "bench-key."
SECRET = base64.b64encode(bytes(range(32))).decode()


def wire_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def sign(msg, key_name, secret):
    """Appends a TSIG record (hmac-sha256, fudge 300) to msg (RFC 8945 §4.3)."""
    alg = wire_name("hmac-sha256.")
    kn = wire_name(key_name.lower())
    now = int(time.time())
    t48 = struct.pack(">HI", now >> 32, now & 0xFFFFFFFF)
    variables = kn + struct.pack(">HI", 255, 0) + alg + t48 + struct.pack(">HHH", 300, 0, 0)
    mac = hmac.new(base64.b64decode(secret), msg + variables, hashlib.sha256).digest()
    msg_id = msg[:2]
    rdata = alg + t48 + struct.pack(">HH", 300, len(mac)) + mac + msg_id + struct.pack(">HH", 0, 0)
    rr = kn + struct.pack(">HHIH", 250, 255, 0, len(rdata)) + rdata
    ar = struct.unpack(">H", msg[10:12])[0] + 1
    return msg[:10] + struct.pack(">H", ar) + msg[12:] + rr


def update(msg_id, origin, name, ip):
    m = struct.pack(">HHHHHH", msg_id, 0x2800, 1, 0, 1, 0)
    m += wire_name(origin) + struct.pack(">HH", 6, 1)
    m += wire_name(name) + struct.pack(">HHIH", 1, 1, 60, 4) + bytes(ip)
    return sign(m, KEY_NAME, SECRET)


def run_clients(port, origin, tag, clients, seconds):
    """Acknowledged updates per second with `clients` in flight; also the rcodes seen."""
    socks = []
    for _ in range(clients):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    seq = [0]
    pending = {}
    acked = 0
    other = {}
    lat = []

    def send(s):
        seq[0] += 1
        n = seq[0]
        name = f"u-{tag}-{n}.{origin}"
        msg_id = n & 0xFFFF
        s.send(update(msg_id, origin, name, [10, (n >> 16) & 255, (n >> 8) & 255, n & 255]))
        pending[s] = (msg_id, time.monotonic())

    for s in socks:
        send(s)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select(socks, [], [], 1.0)
        if not ready:
            # A lost datagram: resend a fresh update (the lost one is not counted).
            for s in socks:
                if time.monotonic() - pending[s][1] > 1.0:
                    send(s)
            continue
        for s in ready:
            try:
                r = s.recv(4096)
            except BlockingIOError:
                continue
            msg_id, t0 = pending[s]
            if len(r) < 12 or struct.unpack(">H", r[:2])[0] != msg_id:
                continue
            rc = r[3] & 0xF
            if rc == 0:
                acked += 1
                lat.append(time.monotonic() - t0)
            else:
                other[rc] = other.get(rc, 0) + 1
            send(s)
    for s in socks:
        s.close()
    lat.sort()
    p50 = lat[len(lat) // 2] * 1000 if lat else 0
    p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else 0
    return acked / seconds, p50, p99, other


def musterd_server(work, zone, port):
    key = os.path.join(work, "bench.key")
    with open(key, "w") as f:
        f.write(f'key "{KEY_NAME}" {{\n\talgorithm hmac-sha256;\n\tsecret "{SECRET}";\n}};\n')
    state = tempfile.mkdtemp(dir=work, prefix="musterd-state-")
    # The zone file is written back by musterd: give it its own copy.
    path = os.path.join(state, os.path.basename(zone["path"]))
    shutil.copy(zone["path"], path)
    binary = os.path.join(ROOT, "target", "release", "musterd")
    return bench.Server("musterd", [binary, "serve", "--listen", f"127.0.0.1:{port}", "--udp-workers", "1",
                                    "--watch-interval", "0s", "--zone", f"{zone['origin']}={path}",
                                    "--key-file", key, "--allow-update", f"{zone['origin']}={KEY_NAME}",
                                    "--state-dir", state], port)


def knot_server(work, zone, port, zonefile_sync=0):
    """Knot as an updatable primary; `zonefile_sync` seconds between zone-file flushes
    (0, Knot's default: after every change)."""
    d = tempfile.mkdtemp(dir=work, prefix="knot-")
    path = os.path.join(d, os.path.basename(zone["path"]))
    shutil.copy(zone["path"], path)
    conf = os.path.join(d, "knot.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
    listen: 127.0.0.1@{port}
    rundir: {d}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: {d}
log:
  - target: stderr
    any: error
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {SECRET}
acl:
  - id: update
    key: {KEY_NAME}
    action: update
zone:
  - domain: {zone['origin']}
    file: {path}
    storage: {d}
    acl: update
    zonefile-sync: {zonefile_sync}
""")
    return bench.Server("knot", ["knotd", "-c", conf], port)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--out", default=None)
    ap.add_argument("--servers", default="musterd,knot,knot-sync60")
    ap.add_argument("--zones", default="small,large")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-p", "muster-server", "--bin", "musterd"], cwd=ROOT, check=True)
    work = args.out or tempfile.mkdtemp(prefix="muster-update-bench-")
    os.makedirs(work, exist_ok=True)
    zones = bench.make_zones(work)
    makers = {
        "musterd": musterd_server,
        "knot": knot_server,
        "knot-sync60": lambda work, zone, port: knot_server(work, zone, port, zonefile_sync=60),
    }
    wanted = [s for s in args.servers.split(",") if s == "musterd" or shutil.which("knotd")]
    print(f"work dir {work}; {args.seconds:.0f} s per figure; updates answered NOERROR per second")
    print(f"{'server':11} {'zone':6} {'load s':>7} {'1 at a time/s':>14} {'p50 ms':>7} {'CPU ms':>7} "
          f"{'50 in flight/s':>15} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms':>7}")
    for zkey in args.zones.split(","):
        zone = zones[zkey]
        for name in wanted:
            port = random.randint(20000, 31000)
            srv = makers[name](work, zone, port)
            load = srv.start(zone["last"])
            try:
                # CPU ms: the server's CPU time (every thread: write-backs and compactions
                # included) per acknowledged update.
                c0 = srv.cpu_seconds()
                one, p50a, _, bad1 = run_clients(port, zone["origin"], "s", 1, args.seconds)
                c1 = srv.cpu_seconds()
                fifty, p50b, p99b, bad50 = run_clients(port, zone["origin"], "c", 50, args.seconds)
                c2 = srv.cpu_seconds()
            finally:
                srv.stop()
            cpu1 = 1000 * (c1 - c0) / max(one * args.seconds, 1)
            cpu50 = 1000 * (c2 - c1) / max(fifty * args.seconds, 1)
            note = f"  other rcodes: {bad1} {bad50}" if bad1 or bad50 else ""
            print(f"{name:11} {zkey:6} {load:7.2f} {one:14.0f} {p50a:7.2f} {cpu1:7.3f} "
                  f"{fifty:15.0f} {p50b:7.2f} {p99b:7.2f} {cpu50:7.3f}{note}", flush=True)


if __name__ == "__main__":
    main()
