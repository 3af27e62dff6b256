#!/usr/bin/env python3
"""Cluster lifecycle benchmark (issues 10 and 19): how long muster-agent takes to bootstrap
a new 3-member etcd cluster once its last record is published, to turn a new member into a
voting member of a running cluster, and to bootstrap 3- and 5-member clusters whose members
start at random moments while their records are published one by one in random order.

    tests/bench/lifecycle_bench.py [--runs 20] [--phases bootstrap,join,random] [--fast-etcd]

Each run, on 127.0.0.1 only, in a fresh temporary directory:
  bootstrap: a zone with the records of m0 and m1 (not m2) is served by musterd; m0, m1
    and m2 are started with `muster-agent exec --expect 3` (own data dir, own peer and
    client ports). Once all three are waiting (--settle seconds, default 3: the agents are
    then at their steady polling interval, as when a record arrives late), m2's records
    are published (zone rewritten, SIGHUP to musterd). Measured: from the SIGHUP until
    `etcdctl endpoint health` succeeds on all three client URLs.
  join: with that healthy 3-member cluster, once it has run --join-delay seconds (default
    8: etcd refuses `member add` until every member has been connected for 5 s, a wait
    that belongs to a cluster just started, not to a grow), m3's records are published
    (zone + SIGHUP, reload finished) and `muster-agent exec` of m3 (no --expect) is
    started. Measured:
    from that start until `etcdctl member list -w json`, asked at m0..m2, lists m3 by name
    and not as a learner (learner add, etcd start, catch-up, promotion by the agent's
    `promote` child).
  random (issue 19): for each size in --sizes (default 3,5), --runs runs. A zone without
    member records is served; each member's `muster-agent exec --expect N` starts at a
    random moment within --window seconds (default 4), and each member's records are
    published (zone rewritten, SIGHUP) at random moments within the same window, in random
    order. Measured per member: record-complete -> exec (from the later of the last record's
    reload and that member's start, to its process becoming etcd) and exec -> healthy (to
    its /health answering true); overall: last record -> all healthy (from the last reload)
    and ready -> all healthy (from the later of the last reload and the last start: when
    the cluster could form at all). Median, p95 and worst are printed. Every run must form
    one cluster of all N voting members, every member deciding `bootstrap`.
Median and worst of the runs are printed, then a one-line summary.

Members run as the tests run them (tests/tests/agent_support/mod.rs): etcd dials its
peers by name (http://m0.cluster.test:PORT), so each member runs in a private mount
namespace (`unshare -m`, root only) with a bind-mounted /etc/hosts naming the members;
the agent itself ignores /etc/hosts and asks musterd. etcd runs with its default
heartbeat/election timings (100 ms / 1000 ms) unless --fast-etcd (the tests' 50 / 500).

It is a benchmark, not a test: it never fails CI. Every wait is bounded (--step-timeout);
every process is started in its own process group and killed by that group's ID at the
end of the run (SIGTERM, then SIGKILL); the run's directory is removed (with --keep-failed
a failed run's directory, with its logs, is kept and named). Binaries: target/release,
else target/debug (build with `cargo build --release --bins`); etcd 3.4 and etcdctl from
PATH.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOMAIN = "cluster.test."
NAMES = [f"m{i}" for i in range(8)]
FAST_ETCD = ["--heartbeat-interval=50", "--election-timeout=500"]


def binary(name, profile, target=None):
    """<target>/<profile>/NAME (target: ./target); with profile "auto", release if built,
    else debug."""
    profiles = ["release", "debug"] if profile == "auto" else [profile]
    for p in profiles:
        path = os.path.join(target or os.path.join(ROOT, "target"), p, name)
        if os.access(path, os.X_OK):
            return path
    sys.exit(f"{name} not found in target/{'|'.join(profiles)}: run `cargo build --release --bins`")


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (held open together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Proc:
    """A process in its own process group, output to a log file; stopped by group ID."""

    live = []  # every Proc not yet stopped, for the cleanup on an interrupt

    def __init__(self, name, argv, log, env=None):
        self.name = name
        self.log = log
        with open(log, "wb") as f:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True)
        self.pgid = self.p.pid  # start_new_session: the child leads its own group
        Proc.live.append(self)

    def text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def running(self):
        return self.p.poll() is None

    def signal(self, sig):
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            pass

    def group_alive(self):
        try:
            os.killpg(self.pgid, 0)
            return True
        except ProcessLookupError:
            return False

    def reap(self):
        try:
            self.p.wait(timeout=0)
        except subprocess.TimeoutExpired:
            pass


def stop_all(procs, grace=10.0):
    """SIGTERM to every group, up to `grace` seconds, then SIGKILL to what is left."""
    for pr in procs:
        pr.signal(signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        for pr in procs:
            pr.reap()
        if not any(pr.group_alive() for pr in procs):
            break
        time.sleep(0.05)
    for pr in procs:
        if pr.group_alive():
            pr.signal(signal.SIGKILL)
        try:
            pr.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if pr in Proc.live:
            Proc.live.remove(pr)


def wait_for(timeout, f, interval=0.05):
    """Calls f until it returns a true value or `timeout` seconds pass; returns it or None."""
    end = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > end:
            return None
        time.sleep(interval)


class Run:
    """One run's directory, ports, musterd and members."""

    def __init__(self, args, agent_bin, musterd_bin, index, size=4):
        self.args = args
        self.agent_bin = agent_bin
        self.musterd_bin = musterd_bin
        self.dir = tempfile.mkdtemp(prefix=f"muster-lifecycle-bench-{index}-")
        self.names = NAMES[:size]
        ports = free_ports(2 * size)
        self.peer = ports[:size]
        self.client = ports[size:]
        self.zone = os.path.join(self.dir, "cluster.test.zone")
        self.hosts = os.path.join(self.dir, "hosts")
        with open(self.hosts, "w") as f:
            f.write("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {n}.cluster.test\n" for n in self.names))
        self.serial = 0
        self.procs = []
        self.members = {}
        self.musterd = None
        self.ns = None

    def publish(self, members):
        """Writes the zone with the SRV, client SRV and A records of `members` (new serial)."""
        self.serial += 1
        lines = ["$ORIGIN cluster.test.", "$TTL 5",
                 f"@ IN SOA ns1 hostmaster {self.serial} 3600 600 86400 5", "  IN NS ns1", "ns1 IN A 127.0.0.1"]
        for i in members:
            lines.append(f"_etcd-server._tcp IN SRV 0 0 {self.peer[i]} {NAMES[i]}")
            lines.append(f"_etcd-client._tcp IN SRV 0 0 {self.client[i]} {NAMES[i]}")
            lines.append(f"{NAMES[i]} IN A 127.0.0.1")
        tmp = self.zone + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self.zone)

    def start_musterd(self):
        env = dict(os.environ, RUST_LOG="info")
        self.musterd = Proc("musterd", [self.musterd_bin, "serve", "--listen", "127.0.0.1:0",
                                        "--watch-interval", "0s", "--zone", f"{DOMAIN}={self.zone}"],
                            os.path.join(self.dir, "musterd.log"), env)
        self.procs.append(self.musterd)

        def addr():
            for line in self.musterd.text().splitlines():
                if "listening on " in line:
                    a = line.split("listening on ", 1)[1].split()[0]
                    if a.startswith("127.0.0.1:"):
                        return a
            if not self.musterd.running():
                raise RuntimeError("musterd exited:\n" + self.musterd.text())
            return None

        self.ns = wait_for(self.args.step_timeout, addr)
        if not self.ns:
            raise RuntimeError("musterd did not start:\n" + self.musterd.text())

    def reload(self):
        """SIGHUP to musterd; returns once its log shows the reload finished."""
        before = self.musterd.text().count("reload finished")
        self.musterd.signal(signal.SIGHUP)
        if not wait_for(self.args.step_timeout, lambda: self.musterd.text().count("reload finished") > before,
                        interval=0.005):
            raise RuntimeError("musterd reload did not finish:\n" + self.musterd.text())

    def start_member(self, i, expect):
        name = NAMES[i]
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"', self.hosts,
                self.agent_bin, "exec", "--domain", DOMAIN, "--nameserver", self.ns, "--name", name,
                "--data-dir", os.path.join(self.dir, f"data-{name}")]
        if expect:
            argv += ["--expect", str(expect)]
        argv += ["--timeout", f"{int(self.args.step_timeout)}s", "--"]
        if self.args.fast_etcd:
            argv += FAST_ETCD
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        m = Proc(name, argv, os.path.join(self.dir, f"{name}.log"), env)
        self.procs.append(m)
        self.members[i] = m
        return m

    def endpoints(self, members):
        return ",".join(f"http://127.0.0.1:{self.client[i]}" for i in members)

    def ctl(self, endpoints, *args):
        env = dict(os.environ, ETCDCTL_API="3")
        try:
            r = subprocess.run(["etcdctl", f"--endpoints={endpoints}", "--dial-timeout=2s", "--command-timeout=3s",
                                *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                               timeout=10)
        except subprocess.TimeoutExpired:
            return False, ""
        return r.returncode == 0, r.stdout

    def healthy(self, members):
        ok, _ = self.ctl(self.endpoints(members), "endpoint", "health")
        return ok

    def voting(self, members, name):
        """True when `member list` (asked at `members`) shows `name` as a voting member."""
        ok, out = self.ctl(self.endpoints(members), "member", "list", "-w", "json")
        if not ok:
            return False
        try:
            listed = json.loads(out).get("members", [])
        except ValueError:
            return False
        return any(m.get("name") == name and not m.get("isLearner", False) for m in listed)

    def check_members_alive(self):
        for m in self.members.values():
            if not m.running():
                raise RuntimeError(f"{m.name} exited ({m.p.returncode}):\n{m.text()[-3000:]}")

    def logs(self):
        return "\n".join(f"--- {p.name} ---\n{p.text()[-3000:]}" for p in self.procs)

    def bootstrap(self):
        """Seconds from the SIGHUP that publishes m2 to all three members healthy."""
        self.publish([0, 1])
        self.start_musterd()
        for i in range(3):
            self.start_member(i, 3)
        # All three agents waiting for complete records.
        time.sleep(self.args.settle)
        self.check_members_alive()
        self.publish([0, 1, 2])
        t0 = time.monotonic()
        self.reload()

        def done():
            self.check_members_alive()
            return self.healthy([0, 1, 2])

        if not wait_for(self.args.step_timeout, done):
            raise RuntimeError(f"not healthy within {self.args.step_timeout:.0f} s:\n{self.logs()}")
        took = time.monotonic() - t0
        for i in range(3):
            if "decision: bootstrap (" not in self.members[i].text():
                raise RuntimeError(f"{NAMES[i]} did not bootstrap:\n{self.members[i].text()[-3000:]}")
        return took

    def join(self):
        """Seconds from `muster-agent exec` of m3 to m3 a voting member."""
        # etcd refuses member add ("unhealthy cluster") until every member has been
        # connected for 5 s (its strict reconfiguration check): a grow happens on a cluster
        # that has been running, so give it --join-delay seconds first.
        time.sleep(self.args.join_delay)
        if not self.healthy([0, 1, 2]):
            raise RuntimeError("the 3-member cluster is not healthy before the join")
        self.publish([0, 1, 2, 3])
        self.reload()
        t0 = time.monotonic()
        self.start_member(3, None)

        def done():
            self.check_members_alive()
            return self.voting([0, 1, 2], "m3")

        if not wait_for(self.args.step_timeout, done):
            raise RuntimeError(f"m3 not a voting member within {self.args.step_timeout:.0f} s:\n{self.logs()}")
        took = time.monotonic() - t0
        if "decision: join (" not in self.members[3].text():
            raise RuntimeError(f"m3 did not join:\n{self.members[3].text()[-3000:]}")
        return took

    def comm(self, i):
        """The program the member's PID runs now (unshare, sh, muster-agent, then etcd)."""
        try:
            with open(f"/proc/{self.members[i].p.pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return ""

    def health(self, i):
        """True when member i's /health says true (0.3 s budget)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.client[i]}/health", timeout=0.3) as r:
                return json.loads(r.read().decode()).get("health") in ("true", True)
        except (OSError, ValueError):
            return False

    def watch(self, i, t, stop):
        """Notes in t[i] when member i becomes etcd ("exec") and when it is healthy."""
        while not stop.is_set():
            if "exec" not in t[i] and self.comm(i) == "etcd":
                t[i]["exec"] = time.monotonic()
            if "exec" in t[i] and self.health(i):
                t[i]["healthy"] = time.monotonic()
                return
            time.sleep(0.005)

    def random_bootstrap(self, rng):
        """Random start moments and publish order; returns the figures of one run."""
        n = len(self.names)
        window = self.args.window
        self.publish([])
        self.start_musterd()
        events = [(rng.uniform(0, window), "start", i) for i in range(n)]
        order = list(range(n))
        rng.shuffle(order)
        for i, at in zip(order, sorted(rng.uniform(0, window) for _ in range(n))):
            events.append((at, "publish", i))
        events.sort()
        t = {i: {} for i in range(n)}
        stop = threading.Event()
        watchers = []
        published = []
        t0 = time.monotonic()
        last_publish = t0
        starts = {}
        try:
            for at, what, i in events:
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                if what == "start":
                    self.start_member(i, n)
                    starts[i] = time.monotonic()
                    w = threading.Thread(target=self.watch, args=(i, t, stop), daemon=True)
                    w.start()
                    watchers.append(w)
                else:
                    published.append(i)
                    self.publish(published)
                    self.reload()
                    last_publish = time.monotonic()

            def done():
                self.check_members_alive()
                return all("healthy" in t[i] for i in range(n))

            if not wait_for(self.args.step_timeout, done):
                raise RuntimeError(f"not all healthy within {self.args.step_timeout:.0f} s:\n{self.logs()}")
        finally:
            stop.set()
            for w in watchers:
                w.join(timeout=2)
        if not self.voting_all(n):
            raise RuntimeError(f"not one cluster of {n} voting members:\n{self.logs()}")
        for i in range(n):
            if "decision: bootstrap (" not in self.members[i].text():
                raise RuntimeError(f"{NAMES[i]} did not bootstrap:\n{self.members[i].text()[-3000:]}")
        ready = max(last_publish, max(starts.values()))
        all_healthy = max(t[i]["healthy"] for i in range(n))
        return {
            "complete_exec": [t[i]["exec"] - max(last_publish, starts[i]) for i in range(n)],
            "exec_healthy": [t[i]["healthy"] - t[i]["exec"] for i in range(n)],
            "record_healthy": all_healthy - last_publish,
            "ready_healthy": all_healthy - ready,
            "peer_confirmed": sum("answers on its peer port" in self.members[i].text() for i in range(n)),
        }

    def voting_all(self, n):
        """True when member list shows exactly the n members, all voting, one cluster ID."""
        ok, out = self.ctl(self.endpoints(range(n)), "member", "list", "-w", "json")
        if not ok:
            return False
        try:
            listed = json.loads(out).get("members", [])
        except ValueError:
            return False
        names = sorted(m.get("name", "") for m in listed if not m.get("isLearner", False))
        if names != sorted(self.names):
            return False
        ids = set()
        for i in range(n):
            ok, out = self.ctl(self.endpoints([i]), "endpoint", "status", "-w", "json")
            if not ok:
                return False
            ids.add(json.loads(out)[0]["Status"]["header"]["cluster_id"])
        return len(ids) == 1

    def close(self, keep):
        # The members first, one process group each (the agent's promote child is in it),
        # then musterd.
        stop_all([p for p in self.procs if p is not self.musterd])
        if self.musterd:
            stop_all([self.musterd])
        if keep:
            print(f"  kept {self.dir}", flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def summary(xs):
    return (statistics.median(xs), max(xs)) if xs else (float("nan"), float("nan"))


def p95(xs):
    """The 95th percentile (nearest rank)."""
    if not xs:
        return float("nan")
    ys = sorted(xs)
    return ys[min(len(ys) - 1, max(0, -(-95 * len(ys) // 100) - 1))]


def spread(xs):
    return f"median {statistics.median(xs):.2f} s, p95 {p95(xs):.2f} s, worst {max(xs):.2f} s" if xs else "no runs"


def random_phase(args, agent_bin, musterd_bin):
    """The randomized bootstrap for every size in --sizes; prints a block per size."""
    rng = random.Random(args.seed)
    for size in [int(x) for x in args.sizes.split(",")]:
        print(f"random bootstrap, {size} members: starts and publications at random moments within "
              f"{args.window:.1f} s, records in random order", flush=True)
        print(f"{'run':>3} {'last record->all healthy s':>27} {'ready->all healthy s':>21} {'peer-confirmed':>15} "
              f"{'worst complete->exec s':>23} {'worst exec->healthy s':>22}", flush=True)
        agg = {"complete_exec": [], "exec_healthy": [], "record_healthy": [], "ready_healthy": []}
        failed = 0
        for n in range(1, args.runs + 1):
            run = Run(args, agent_bin, musterd_bin, n, size)
            ok = True
            try:
                r = run.random_bootstrap(rng)
                for k in agg:
                    agg[k].extend(r[k] if isinstance(r[k], list) else [r[k]])
                print(f"{n:3} {r['record_healthy']:27.2f} {r['ready_healthy']:21.2f} "
                      f"{r['peer_confirmed']:>13}/{size} {max(r['complete_exec']):23.2f} "
                      f"{max(r['exec_healthy']):22.2f}", flush=True)
            except RuntimeError as e:
                ok = False
                failed += 1
                print(f"{n:3} failed: {str(e)[:4000]}", flush=True)
            finally:
                run.close(keep=not ok and args.keep_failed)
        print(f"  per member, record-complete -> exec: {spread(agg['complete_exec'])}")
        print(f"  per member, exec -> healthy:        {spread(agg['exec_healthy'])}")
        print(f"  last record -> all healthy:         {spread(agg['record_healthy'])}")
        print(f"  ready -> all healthy:               {spread(agg['ready_healthy'])}")
        print(f"summary: random {size} members: last record -> all healthy {spread(agg['record_healthy'])}; "
              f"{args.runs - failed} of {args.runs} runs ok, {failed} failed", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--phases", default="bootstrap,join",
                    help="bootstrap, join (needs bootstrap) and/or random, comma-separated")
    ap.add_argument("--sizes", default="3,5", help="cluster sizes of the random phase")
    ap.add_argument("--window", type=float, default=4.0,
                    help="random phase: starts and publications fall within this many seconds")
    ap.add_argument("--seed", type=int, default=None, help="random phase: seed, for a repeatable schedule")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds between starting the agents and publishing the last record")
    ap.add_argument("--join-delay", type=float, default=8.0,
                    help="seconds the bootstrapped cluster runs before the join (etcd refuses member add "
                         "for 5 s after its members connect)")
    ap.add_argument("--step-timeout", type=float, default=90.0, help="bound for every wait, seconds")
    ap.add_argument("--fast-etcd", action="store_true", help="etcd with the tests' 50/500 ms timings")
    ap.add_argument("--profile", default="auto", choices=["auto", "release", "debug"])
    ap.add_argument("--target-dir", default=None,
                    help="take the binaries from this cargo target directory (default: ./target), "
                         "e.g. to compare another checkout's build under the same conditions")
    ap.add_argument("--keep-failed", action="store_true", help="keep the directory (logs) of a failed run")
    args = ap.parse_args()
    phases = args.phases.split(",")
    for prog in ("etcd", "etcdctl", "unshare"):
        if not shutil.which(prog):
            sys.exit(f"{prog} not found in PATH")
    if os.geteuid() != 0:
        sys.exit("needs root (a mount namespace per member for its /etc/hosts)")
    agent_bin = binary("muster-agent", args.profile, args.target_dir)
    musterd_bin = binary("musterd", args.profile, args.target_dir)
    etcd_version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]

    def on_signal(sig, _frame):
        stop_all(list(Proc.live), grace=5)
        sys.exit(128 + sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if "random" in phases:
        print(f"{agent_bin}, {musterd_bin}, {etcd_version}; {args.runs} runs per size; etcd timings "
              f"{'50/500 ms' if args.fast_etcd else 'default 100/1000 ms'}", flush=True)
        random_phase(args, agent_bin, musterd_bin)
        phases = [p for p in phases if p != "random"]
        if not phases:
            return
    print(f"{agent_bin}, {musterd_bin}, {etcd_version}; {args.runs} runs; settle {args.settle:.1f} s; "
          f"join after {args.join_delay:.0f} s; etcd timings {'50/500 ms' if args.fast_etcd else 'default 100/1000 ms'}", flush=True)
    print(f"{'run':>3} {'bootstrap s':>12} {'join s':>8}", flush=True)
    boot, join, failed = [], [], 0
    for n in range(1, args.runs + 1):
        run = Run(args, agent_bin, musterd_bin, n)
        ok = True
        b = j = None
        try:
            b = run.bootstrap()
            boot.append(b)
            if "join" in phases:
                j = run.join()
                join.append(j)
        except RuntimeError as e:
            ok = False
            failed += 1
            print(f"{n:3} failed: {str(e)[:4000]}", flush=True)
        finally:
            run.close(keep=not ok and args.keep_failed)
        if ok:
            js = f"{j:8.2f}" if j is not None else f"{'-':>8}"
            print(f"{n:3} {b:12.2f} {js}", flush=True)
    bm, bw = summary(boot)
    jm, jw = summary(join)
    print(f"bootstrap (last record published -> 3 members healthy): median {bm:.2f} s, worst {bw:.2f} s "
          f"({len(boot)} runs)")
    if "join" in phases:
        print(f"join (exec of a 4th member -> voting member): median {jm:.2f} s, worst {jw:.2f} s ({len(join)} runs)")
    line = f"summary: bootstrap median {bm:.2f} s worst {bw:.2f} s"
    if "join" in phases:
        line += f"; join median {jm:.2f} s worst {jw:.2f} s"
    print(f"{line}; {len(boot)} of {args.runs} runs ok, {failed} failed")


if __name__ == "__main__":
    main()
