#!/usr/bin/env python3
"""Side-by-side benchmark: musterd against NSD and Knot on the same zones and query mix.

    tests/bench/bench.py [--seconds 20] [--runs 3] [--out DIR]

Generates a small zone (one 3-member etcd cluster) and a large zone (10,000 clusters as
subdomains, every 4th with 5 members, ~210k records), a query file of 70% SRV, 20% A,
7% AAAA and 3% NXDOMAIN, and runs dnsperf against each server: server pinned to CPU 0,
dnsperf on CPU 1, one server thread each. Reports medians of the runs: queries/s, server
CPU microseconds per query (from /proc/PID/stat), latency avg/max saturated and at a fixed
20k queries/s, RSS and PSS, zone load time (start to the first answer for the last name of
the file), and the ratio to NSD from the same run. It is a benchmark, not a test: it never
fails CI. Servers that are not installed are left out. Everything runs on 127.0.0.1.
The row "musterd-nocoalesce" is musterd with udp_coalesce = "0s" (no waiting for fuller
batches under load): the lowest-latency setting, shown for the trade-off.

    tests/bench/bench.py --seconds 5 --runs 1 --zones small --servers musterd,nsd --no-extra
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def zone_text(origin, clusters):
    """Zone text and the list of (name, type) that exist, per cluster spec list."""
    lines = [
        f"$ORIGIN {origin}",
        "$TTL 30",
        "@ 300 IN SOA ns1 hostmaster 2026112201 3600 600 86400 60",
        "@ 300 IN NS ns1",
        "ns1 IN A 127.0.0.1",
    ]
    names = []
    last = "ns1." + origin
    for sub, members in clusters:
        suffix = f".{sub}" if sub else ""
        for kind, port in (("server", 2380), ("client", 2379)):
            for ssl in ("-ssl", ""):
                owner = f"_etcd-{kind}{ssl}._tcp{suffix}"
                for m in range(members):
                    lines.append(f"{owner} IN SRV 0 0 {port} m{m}{suffix}")
                names.append((f"{owner}.{origin}", "SRV"))
        for m in range(members):
            host = f"m{m}{suffix}"
            lines.append(f"{host} IN A 10.{(m + 1) % 256}.{len(names) // 256 % 256}.{len(names) % 256}")
            lines.append(f"{host} IN AAAA fd00::{len(names) % 65536:x}:{m}")
            names.append((f"{host}.{origin}", "A"))
            names.append((f"{host}.{origin}", "AAAA"))
            last = f"{host}.{origin}"
    return "\n".join(lines) + "\n", names, last


def make_zones(work):
    small = zone_text("small.bench.", [("", 3)])
    large = zone_text("large.bench.", [(f"c{i}", 5 if i % 4 == 0 else 3) for i in range(10000)])
    out = {}
    for key, origin, (text, names, last) in (("small", "small.bench.", small), ("large", "large.bench.", large)):
        path = os.path.join(work, f"{origin}zone")
        with open(path, "w") as f:
            f.write(text)
        out[key] = {"origin": origin, "path": path, "names": names, "last": last,
                    "records": sum(1 for l in text.splitlines() if " IN " in l)}
    return out


def make_queries(zone, n, path, seed=1):
    rnd = random.Random(seed)
    srv = [x for x in zone["names"] if x[1] == "SRV"]
    a = [x for x in zone["names"] if x[1] == "A"]
    aaaa = [x for x in zone["names"] if x[1] == "AAAA"]
    with open(path, "w") as f:
        for _ in range(n):
            r = rnd.random()
            if r < 0.70:
                name, t = rnd.choice(srv)
            elif r < 0.90:
                name, t = rnd.choice(a)
            elif r < 0.97:
                name, t = rnd.choice(aaaa)
            else:
                name, t = f"nx{rnd.randrange(10**9)}.{zone['origin']}", "A"
            f.write(f"{name} {t}\n")


def query_packet(name, qtype=1):
    pkt = struct.pack(">HHHHHH", 0x4242, 0, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        pkt += bytes([len(label)]) + label.encode()
    return pkt + b"\x00" + struct.pack(">HH", qtype, 1)


def wait_answer(port, name, timeout=120.0):
    """Seconds until the server answers `name A` with NOERROR and an answer."""
    start = time.monotonic()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.05)
    pkt = query_packet(name)
    while time.monotonic() - start < timeout:
        try:
            s.sendto(pkt, ("127.0.0.1", port))
            data, _ = s.recvfrom(4096)
            if len(data) >= 12 and data[3] & 0x0F == 0 and struct.unpack(">H", data[6:8])[0] > 0:
                return time.monotonic() - start
        except (socket.timeout, ConnectionRefusedError):
            pass
        time.sleep(0.005)
    raise RuntimeError(f"no answer for {name} on port {port} within {timeout}s")


def free_port():
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()


def tree(pid):
    """The process and all its descendants (NSD forks its server and xfrd processes)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def cpu_seconds(pid):
    """utime+stime of a process tree (all threads, all descendants)."""
    total = 0.0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except OSError:
            pass
    return total


def memory_kb(pid):
    """RSS and PSS summed over the process tree (PSS shares shared pages fairly)."""
    rss = pss = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


class Server:
    def __init__(self, name, argv, port, pid_of=None, cwd=None):
        self.name, self.argv, self.port, self.cwd = name, argv, port, cwd
        self.proc = None

    def start(self, last_name):
        t0 = time.monotonic()
        self.proc = subprocess.Popen(["taskset", "-c", "0"] + self.argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.cwd)
        wait_answer(self.port, last_name)
        return time.monotonic() - t0

    def cpu_seconds(self):
        """CPU time (user + system, every thread) the server has used so far."""
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def musterd(work, zone, port, workers=1):
    binary = os.path.join(ROOT, "target", "release", "musterd")
    return Server("musterd", [binary, "serve", "--listen", f"127.0.0.1:{port}", "--udp-workers", str(workers),
                              "--watch-interval", "0s", "--zone", f"{zone['origin']}={zone['path']}"], port)


def musterd_nocoalesce(work, zone, port, workers=1):
    """musterd with UDP coalescing off (udp_coalesce = "0s"): the lowest-latency setting."""
    conf = os.path.join(work, "nocoalesce.toml")
    with open(conf, "w") as f:
        f.write('udp_coalesce = "0s"\n')
    srv = musterd(work, zone, port, workers)
    srv.name = "musterd-nocoalesce"
    srv.argv += ["--config", conf]
    return srv


def nsd(work, zone, port, workers=1):
    d = tempfile.mkdtemp(dir=work, prefix="nsd-")
    conf = os.path.join(d, "nsd.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
    ip-address: 127.0.0.1@{port}
    server-count: {workers}
    username: ""
    chroot: ""
    zonesdir: "{d}"
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    pidfile: "{d}/nsd.pid"
    logfile: "{d}/nsd.log"
    rrl-ratelimit: 0
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: {zone['origin']}
    zonefile: {zone['path']}
""")
    return Server("nsd", ["nsd", "-d", "-c", conf], port)


def knot(work, zone, port, workers=1):
    d = tempfile.mkdtemp(dir=work, prefix="knot-")
    conf = os.path.join(d, "knot.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
    listen: 127.0.0.1@{port}
    rundir: {d}
    udp-workers: {workers}
    tcp-workers: 1
    background-workers: 1
database:
    storage: {d}
log:
  - target: stderr
    any: error
template:
  - id: default
    storage: {d}
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: {zone['origin']}
    file: {zone['path']}
""")
    return Server("knot", ["knotd", "-c", conf], port)


def dnsperf(port, queries, seconds, rate=None):
    argv = ["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", queries,
            "-l", str(seconds), "-c", "8", "-q", "500", "-t", "2"]
    if rate:
        argv += ["-Q", str(rate)]
    out = subprocess.run(argv, capture_output=True, text=True).stdout

    def grab(pattern, cast=float, default=0.0):
        m = re.search(pattern, out)
        return cast(m.group(1)) if m else default

    return {
        "sent": grab(r"Queries sent:\s+(\d+)", int, 0),
        "completed": grab(r"Queries completed:\s+(\d+)", int, 0),
        "lost": grab(r"Queries lost:\s+(\d+)", int, 0),
        "qps": grab(r"Queries per second:\s+([\d.]+)"),
        "lat_avg_ms": grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        "lat_max_ms": grab(r"max ([\d.]+)\)") * 1000,
    }


def measure_once(factory, work, zone, queries, seconds, workers=1, pin=True):
    """One run of one server: start, warm up, saturated and fixed-rate load."""
    port = free_port()
    srv = factory(work, zone, port, workers)
    try:
        load = srv.start(zone["last"])
        if not pin:
            for p in tree(srv.proc.pid):
                for tid in os.listdir(f"/proc/{p}/task"):
                    try:
                        os.sched_setaffinity(int(tid), {0, 1})
                    except OSError:
                        pass
        pid = srv.proc.pid
        # Warm up: fault in the zone and the caches.
        dnsperf(port, queries, 2)
        c0 = cpu_seconds(pid)
        sat = dnsperf(port, queries, seconds)
        c1 = cpu_seconds(pid)
        fixed = dnsperf(port, queries, min(seconds, 10), rate=20000)
        rss, pss = memory_kb(pid)
        return {
            "load_s": load,
            "qps": sat["qps"],
            "cpu_us": (c1 - c0) * 1e6 / max(sat["completed"], 1),
            "lat_avg_ms": sat["lat_avg_ms"],
            "lat_max_ms": sat["lat_max_ms"],
            "fixed_avg_ms": fixed["lat_avg_ms"],
            "fixed_max_ms": fixed["lat_max_ms"],
            "fixed_lost": fixed["lost"],
            "rss_mb": rss / 1024,
            "pss_mb": pss / 1024,
        }
    finally:
        srv.stop()


def medians(results):
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def measure(factory, work, zone, queries, seconds, runs, workers=1, pin=True):
    return medians([measure_once(factory, work, zone, queries, seconds, workers, pin) for _ in range(runs)])


def nxdomain_cost(factory, work, zone, seconds, runs, workers=1):
    """CPU per query for hits only vs NXDOMAIN only, on the same server: the two query
    files alternate `runs` times and the medians are compared (single runs on a shared
    machine vary by ±20%)."""
    port = free_port()
    srv = factory(work, zone, port, workers)
    hits = os.path.join(work, f"hits-{zone['origin']}txt")
    misses = os.path.join(work, f"nx-{zone['origin']}txt")
    rnd = random.Random(7)
    with open(hits, "w") as f:
        for _ in range(100000):
            name, t = rnd.choice(zone["names"])
            f.write(f"{name} {t}\n")
    with open(misses, "w") as f:
        for _ in range(100000):
            f.write(f"nx{rnd.randrange(10**9)}.c{rnd.randrange(10000)}.{zone['origin']} A\n")
    try:
        srv.start(zone["last"])
        samples = {"hit": [], "nx": []}
        for _ in range(runs):
            for key, qf in (("hit", hits), ("nx", misses)):
                dnsperf(port, qf, 1)
                c0 = cpu_seconds(srv.proc.pid)
                r = dnsperf(port, qf, seconds)
                samples[key].append((cpu_seconds(srv.proc.pid) - c0) * 1e6 / max(r["completed"], 1))
        return {k: statistics.median(v) for k, v in samples.items()}
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench"))
    ap.add_argument("--servers", default="musterd,musterd-nocoalesce,nsd,knot")
    ap.add_argument("--zones", default="small,large", help="which zones to measure")
    ap.add_argument("--no-extra", action="store_true",
                    help="skip the NXDOMAIN-cost and multi-core measurements")
    args = ap.parse_args()

    if not shutil.which("dnsperf"):
        print("dnsperf is not installed (apt-get install dnsperf); nothing to measure")
        return 0
    subprocess.run(["cargo", "build", "--release", "-p", "muster-server", "--bin", "musterd"], cwd=ROOT, check=True)
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="muster-bench-")
    zones = make_zones(work)
    factories = {"musterd": musterd, "musterd-nocoalesce": musterd_nocoalesce, "nsd": nsd, "knot": knot}
    programs = {"musterd": None, "musterd-nocoalesce": None, "nsd": "nsd", "knot": "knotd"}
    chosen = [s for s in args.servers.split(",") if programs[s] is None or shutil.which(programs[s])]
    table = {}
    zones_chosen = {k: v for k, v in zones.items() if k in args.zones.split(",")}
    for key, zone in zones_chosen.items():
        qf = os.path.join(work, f"queries-{key}.txt")
        make_queries(zone, 200000, qf)
        # Runs are interleaved (A B C, A B C, ...): this machine's speed drifts over
        # minutes, and back-to-back runs of one server would carry that drift into the ratios.
        runs = {name: [] for name in chosen}
        for i in range(args.runs):
            for name in chosen:
                print(f"measuring {name} on the {key} zone ({zone['records']} records), run {i + 1}...",
                      file=sys.stderr)
                runs[name].append(measure_once(factories[name], work, zone, qf, args.seconds))
        for name in chosen:
            table[(name, key)] = medians(runs[name])
    extra = {}
    for name in chosen if "large" in zones_chosen and not args.no_extra else []:
        extra[(name, "nx")] = nxdomain_cost(factories[name], work, zones["large"], min(args.seconds, 10), args.runs)
        qf = os.path.join(work, "queries-large.txt")
        extra[(name, "multicore")] = measure(factories[name], work, zones["large"], qf, min(args.seconds, 10), 1,
                                             workers=2, pin=False)["qps"]

    lines = ["| server | zone | queries/s | CPU µs/query | ×NSD CPU | lat avg/max ms (saturated) | lat avg/max ms @20k | lost @20k | RSS MB | PSS MB | load s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in zones_chosen:
        base = table.get(("nsd", key))
        for name in chosen:
            r = table[(name, key)]
            ratio = f"{r['cpu_us'] / base['cpu_us']:.2f}" if base else "-"
            lines.append(f"| {name} | {key} | {r['qps']:.0f} | {r['cpu_us']:.2f} | {ratio} | "
                         f"{r['lat_avg_ms']:.3f}/{r['lat_max_ms']:.1f} | {r['fixed_avg_ms']:.3f}/{r['fixed_max_ms']:.1f} | "
                         f"{r['fixed_lost']} | {r['rss_mb']:.1f} | {r['pss_mb']:.1f} | {r['load_s']:.2f} |")
    lines.append("")
    lines.append("| server | hit CPU µs | NXDOMAIN CPU µs | NX/hit | 2 workers, unpinned, large zone, queries/s |")
    lines.append("|---|---|---|---|---|")
    for name in chosen if extra else []:
        nx = extra[(name, "nx")]
        lines.append(f"| {name} | {nx['hit']:.2f} | {nx['nx']:.2f} | {nx['nx'] / nx['hit']:.2f} | {extra[(name, 'multicore')]:.0f} |")
    report = "\n".join(lines)
    print(report)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(report + "\n")
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump({f"{k[0]}/{k[1]}": v for k, v in table.items()}, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
