#!/usr/bin/env python3
"""Backup and restore benchmark (issue 18): how long `muster-agent backup` takes against
`etcdctl snapshot save` for the same data, and how long a 3-member cluster takes to be
healthy after the last host's `muster-agent restore` starts.

    tests/bench/backup_bench.py [--mb 512] [--rounds 3] [--spread 3]

One run, on 127.0.0.1 only, in a fresh temporary directory (the harness of
lifecycle_bench.py: musterd serving the zone, members started as `muster-agent exec` in
private mount namespaces with an /etc/hosts naming them):
  fill: a healthy 3-member cluster gets --mb MiB of values (512 KiB random values put
    through etcd's JSON gateway, a few in flight), then its backend is defragmented so
    that the database holds the data and little free space.
  backup: --rounds times, alternating: `muster-agent backup` run on every member (the
    leader takes the snapshot: the figure is that run, from start to exit, which includes
    the stream, both hashes, `etcdctl snapshot status` and the atomic store), and
    `etcdctl snapshot save` against the leader's client URL (stream and write only).
  restore: every member stopped, m0's and m1's data dirs wiped, `muster-agent restore`
    started on m0, m1, m2 spread over --spread seconds (in that order). Measured: from the
    last start until `etcdctl endpoint health` succeeds on all three client URLs; then
    the key count is checked.

It is a benchmark, not a test: it never fails CI. Every wait is bounded (--step-timeout);
every process is started in its own process group and killed by that group's ID at the
end; the run's directory is removed (kept with --keep). Binaries: target/release, else
target/debug; etcd 3.4 and etcdctl from PATH.
"""

import argparse
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lifecycle_bench as lb  # noqa: E402  (the shared harness)

VALUE = 512 * 1024


def put(url, key, value):
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(value).decode()}).encode()
    req = urllib.request.Request(url + "/v3/kv/put", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def fill(run, mb):
    urls = [f"http://127.0.0.1:{run.client[i]}" for i in range(3)]
    n = mb * 1024 * 1024 // VALUE
    blob = os.urandom(VALUE)
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(lambda k: put(urls[k % 3], f"bench-{k:06d}", blob[k % 97:] + blob[:k % 97]), range(n)))
    took = time.monotonic() - t0
    for i in range(3):
        subprocess.run(["etcdctl", f"--endpoints={run.endpoints([i])}", "--command-timeout=600s", "defrag"],
                       capture_output=True, env=dict(os.environ, ETCDCTL_API="3"), timeout=900)
    return n, took


def leader(run):
    ok, out = run.ctl(run.endpoints([0, 1, 2]), "endpoint", "status", "-w", "json")
    if not ok:
        raise RuntimeError("endpoint status failed")
    for s in json.loads(out):
        st = s["Status"]
        if st["leader"] == st["header"]["member_id"]:
            return s["Endpoint"], st["dbSize"]
    raise RuntimeError("no leader")


def backup_round(run, agent_bin, dest):
    """Seconds of the backup run that took the snapshot."""
    took = None
    for i in range(3):
        t0 = time.monotonic()
        r = subprocess.run([agent_bin, "backup", "--data-dir", os.path.join(run.dir, f"data-{lb.NAMES[i]}"),
                            "--to", dest], capture_output=True, text=True, timeout=run.args.step_timeout)
        t = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"backup on {lb.NAMES[i]} failed: {r.stderr}")
        if "saved snapshot" in r.stderr:
            took = t
    if took is None:
        raise RuntimeError("no member took the snapshot")
    return took


def etcdctl_round(endpoint, path):
    t0 = time.monotonic()
    r = subprocess.run(["etcdctl", f"--endpoints={endpoint}", "snapshot", "save", path],
                       capture_output=True, text=True, env=dict(os.environ, ETCDCTL_API="3"), timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"etcdctl snapshot save failed: {r.stderr}")
    took = time.monotonic() - t0
    os.remove(path)
    return took


def start_restore(run, i, dest):
    name = lb.NAMES[i]
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', run.hosts,
            run.agent_bin, "restore", "--domain", lb.DOMAIN, "--nameserver", run.ns, "--name", name,
            "--data-dir", os.path.join(run.dir, f"data-{name}"), "--expect", "3", "--from", dest,
            "--timeout", f"{int(run.args.step_timeout)}s", "--"]
    m = lb.Proc(name, argv, os.path.join(run.dir, f"{name}-restore.log"),
                {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    run.procs.append(m)
    run.members[i] = m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=512, help="MiB of values to write")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--spread", type=float, default=3.0, help="seconds over which the restores start")
    ap.add_argument("--step-timeout", type=float, default=600.0)
    ap.add_argument("--profile", default="auto", choices=["auto", "release", "debug"])
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.fast_etcd = False
    if os.geteuid() != 0:
        sys.exit("needs root (a mount namespace per member for its /etc/hosts)")
    agent_bin = lb.binary("muster-agent", args.profile)
    musterd_bin = lb.binary("musterd", args.profile)

    def on_signal(sig, _frame):
        lb.stop_all(list(lb.Proc.live), grace=5)
        sys.exit(128 + sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run = lb.Run(args, agent_bin, musterd_bin, 0)
    ok = False
    try:
        run.publish([0, 1, 2])
        run.start_musterd()
        for i in range(3):
            run.start_member(i, 3)
        if not lb.wait_for(args.step_timeout, lambda: run.healthy([0, 1, 2])):
            raise RuntimeError("not healthy:\n" + run.logs())
        n, took = fill(run, args.mb)
        endpoint, db = leader(run)
        print(f"{agent_bin}; {n} values of {VALUE // 1024} KiB written in {took:.1f} s; "
              f"leader {endpoint}, database {db / 2**20:.0f} MiB after defrag", flush=True)
        dest = os.path.join(run.dir, "backups")
        ours, theirs = [], []
        for r in range(args.rounds):
            ours.append(backup_round(run, agent_bin, dest))
            theirs.append(etcdctl_round(endpoint, os.path.join(run.dir, "etcdctl.db")))
            print(f"round {r + 1}: muster-agent backup {ours[-1]:.2f} s, etcdctl snapshot save {theirs[-1]:.2f} s",
                  flush=True)
        # Keep the newest snapshot only (the restore picks the newest anyway).
        lb.stop_all([run.members[i] for i in range(3)])
        for i in (0, 1):
            shutil.rmtree(os.path.join(run.dir, f"data-{lb.NAMES[i]}"))
        last = None
        for i in range(3):
            if i:
                time.sleep(args.spread / 2)
            last = time.monotonic()
            start_restore(run, i, dest)
        if not lb.wait_for(args.step_timeout, lambda: run.healthy([0, 1, 2])):
            raise RuntimeError("not healthy after the restore:\n" + run.logs())
        healthy = time.monotonic() - last
        ok_count, out = run.ctl(run.endpoints([0, 1, 2]), "get", "bench-", "--prefix", "--keys-only")
        keys = sum(1 for line in out.splitlines() if line.startswith("bench-"))
        print(f"restore: last restore start -> 3 members healthy in {healthy:.2f} s; {keys} of {n} keys")
        print(f"summary: {db / 2**20:.0f} MiB database; backup median {statistics.median(ours):.2f} s "
              f"(etcdctl snapshot save median {statistics.median(theirs):.2f} s); restore -> healthy "
              f"{healthy:.2f} s; keys {keys}/{n}")
        ok = True
    finally:
        run.close(keep=args.keep or not ok)


if __name__ == "__main__":
    main()
