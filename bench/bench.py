"""make bench: havirt's scan against the naive way and the parallel OpenSSH floor.

Needs the lab up (make bench brings up 64 nodes, then down). Starts 5
domains on each of node1..node8, lets them settle, then measures in one run
(so the ratios compare like with like on this shared, noisy machine):
  - on 8 nodes (those with the 40 domains), in rounds: the naive loop (for
    each node `ssh node virsh list --all`, then for each domain `ssh node
    virsh dominfo NAME`, node after node), the floor (OpenSSH to all nodes
    at once, one session and one virsh each) and `havirt node scan` (the
    whole command, process start included);
  - on every lab node (64; 56 of them without domains), the transports
    (bench_transport.py): the floor, paramiko, openssh without sharing, its
    first scan (it opens the shared connections) and a second one within
    ssh.persist (it reuses them), `domain start` on those warm connections
    (dry run and --yes), and where a warm scan's CPU goes;
  - havirt scan wall time for 1, 2, 4, ... up to every lab node;
  - on the 8 nodes: read-only commands (no paramiko import) wall time;
    failover of three block-volume domains (leases) of a node powered off
    (`lab fault NODE power-off`: its packets go unanswered), from the command
    to all three verified running elsewhere; read-only commands and a start
    with the etcd store against files (bench_etcd.py: the lab's three-member
    etcd in node1..node3);
  - state load and save at 1,000 nodes and 20,000 domains (no lab).
Writes docs/BENCHMARK.md, keeping the balance section (bench_balance.py writes it).
`bench.py failover` runs the failover scenario alone (any lab of 3 nodes or more) and
only prints its time.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import bench_etcd  # bench/ is on the path: the script runs from there
import bench_transport
from benchkit import lab_env
from machine import machine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PER_NODE = 5
DOMAIN_NODES = 8                 # the nodes with domains; the other lab nodes have none
RUNS = 5
NAIVE_RUNS = 3


def sh(cmd: str, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=check)


def timed(cmd: str) -> float:
    start = time.perf_counter()
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"bench: command failed ({res.returncode}): {cmd}\n{res.stderr[-500:]}")
    return took


def median_of(cmd: str, runs: int) -> float:
    return statistics.median(timed(cmd) for _ in range(runs))


def start_domains(env, nodes: list[str], home: Path) -> list[str]:
    """PER_NODE diskless domains per node, made from the lab's tiny1.xml (their
    XML also goes to the bench home's conf/, as havirt expects)."""
    template = (Path(env["LAB_DIR"]) / "xml" / "tiny1.xml").read_text()
    xml_dir = Path(env["LAB_DIR"]) / "bench-xml"
    xml_dir.mkdir(exist_ok=True)
    names = []
    for i, node in enumerate(nodes):
        for j in range(PER_NODE):
            name = f"b{i + 1}d{j + 1}"
            xml = re.sub(r"<name>[^<]+</name>", f"<name>{name}</name>", template)
            xml = re.sub(r"<uuid>[^<]+</uuid>", "", xml)
            (xml_dir / f"{name}.xml").write_text(xml)
            (home / "conf" / f"{name}.xml").write_text(xml)
            names.append(name)
    procs = []
    for i, node in enumerate(nodes):
        files = " ".join(str(xml_dir / f"b{i + 1}d{j + 1}.xml") for j in range(PER_NODE))
        procs.append(subprocess.Popen(
            ["bash", "-c", f"for f in {files}; do {env['LAB_SCRIPT']} exec {node} "
                           f"virsh -q -c qemu:///system create $f >/dev/null || exit 1; done"]))
    if any(p.wait() for p in procs):
        raise SystemExit("bench: could not start the domains")
    return names


def settle(seconds_max=150, quiet_load=0.6) -> float:
    """Wait until the domains' firmware has started (the 1-min load falls)."""
    start = time.monotonic()
    time.sleep(20)
    while time.monotonic() - start < seconds_max:
        # CPU busy over one second, from /proc/stat
        a = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        time.sleep(2)
        b = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = (b[3] + b[4]) - (a[3] + a[4])
        total = sum(b) - sum(a)
        busy = 1 - idle / total if total else 0
        if busy < quiet_load / (os.cpu_count() or 1) + 0.25:
            break
    return time.monotonic() - start


def naive_cmd(env, nodes) -> str:
    ssh = f"ssh -F {env['LAB_SSH_CONFIG']}"
    return (f"for n in {' '.join(nodes)}; do "
            f"for d in $({ssh} $n virsh -q -c qemu:///system list --all --name); do "
            f"{ssh} $n virsh -c qemu:///system dominfo $d >/dev/null; done; done")


def floor_cmd(env, nodes) -> str:
    ssh = f"ssh -F {env['LAB_SSH_CONFIG']}"
    v = "'virsh -c qemu:///system \"hostname; nodeinfo; list --all; domstats --state --balloon --vcpu\"'"
    return " ".join(f"{ssh} {n} {v} >/dev/null &" for n in nodes) + " wait"


def script_floor_cmd(env, nodes, folder: Path) -> str:
    """The floor's way (fresh OpenSSH sessions, all nodes at once) running
    havirt's own scan script of each node (both drivers, the lease probe)
    instead of the floor's one virsh: what havirt's scan costs beyond
    OpenSSH's own, the script's extra work apart. The scripts are written in
    `folder` and read by bash itself (`$(<file)`: no process)."""
    from havirt.remote.commands import scan_script
    from havirt.store.config import load_config
    cfg = load_config(f"{env['LAB_HOME']}/config.yaml")
    ssh = f"ssh -F {env['LAB_SSH_CONFIG']}"
    for n in nodes:
        (folder / n).write_text(scan_script(cfg, node=n).text())
    return " ".join(f'{ssh} {n} "$(<{folder / n})" >/dev/null &' for n in nodes) + " wait"


def state_io(n_nodes=1000, n_domains=20000) -> tuple[float, float, int]:
    from havirt.store.state import DomainRecord, NodeRecord, State, load_state, save_state
    st = State()
    for i in range(n_nodes):
        st.nodes[f"n{i}"] = NodeRecord(name=f"n{i}", address=f"10.1.{i // 250}.{i % 250}",
                                       cpus=64, memory_mib=512000, reachable=True,
                                       last_scan="2026-01-01T00:00:00Z")
    for i in range(n_domains):
        st.domains[f"d{i}"] = DomainRecord(name=f"d{i}", node=f"n{i % n_nodes}", state="running",
                                           memory_mib=4096, vcpus=2, last_seen="2026-01-01T00:00:00Z")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "state.yaml"
        saves, loads = [], []
        for _ in range(3):
            t = time.perf_counter()
            save_state(path, st)
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            back = load_state(path)
            loads.append(time.perf_counter() - t)
        assert len(back.domains) == n_domains and len(back.nodes) == n_nodes
        return statistics.median(loads), statistics.median(saves), path.stat().st_size


def readonly_times(havirt) -> dict:
    out = {}
    for args in ("node list", "domain list", "cluster status --no-scan", "--help", "--version"):
        out[args] = median_of(f"{havirt} {args} >/dev/null", RUNS)
    probe = sh(f"{sys.executable} -c \"import sys; sys.argv=['havirt','--home','{os.environ['BENCH_HOME']}',"
               f"'node','list']; sys.path.insert(0,'{REPO}');\n"
               "from havirt.cli import run; import io, contextlib\n"
               "with contextlib.redirect_stdout(io.StringIO()): run(sys.argv[1:])\n"
               "print('paramiko' in sys.modules)\"")
    out["paramiko imported by node list"] = probe.stdout.strip()
    return out


def failover_time(env, nodes, havirt, home: Path) -> dict:
    """Three block-volume domains on the last node, that node powered off, then
    `havirt --yes node failover NODE` with havirt's default connect timeout
    (5 s; the lab's config.yaml says 3); each must then run on exactly one
    other node."""
    import yaml
    dead, vols = nodes[-1], ["vol1", "vol2", "vol3"]
    cfg = yaml.safe_load((home / "config.yaml").read_text())
    (home / "failover.yaml").write_text(yaml.safe_dump({**cfg, "ssh": {**cfg["ssh"], "connect_timeout": 5}}))
    for v in vols:
        shutil.copy(Path(env["LAB_HOME"]) / "conf" / f"{v}.xml", home / "conf" / f"{v}.xml")
        sh(f"{havirt} --yes domain start {v} {dead} >/dev/null")
    sh(f"{havirt} node scan -q", check=False)
    sh(f"{env['LAB_SCRIPT']} fault {dead} power-off")
    try:
        t = time.perf_counter()
        p = sh(f"{havirt} --config {home / 'failover.yaml'} --yes node failover {dead}", check=False)
        seconds = time.perf_counter() - t
        running = {n: sh(f"{env['LAB_SCRIPT']} exec {n} virsh -q -c qemu:///system list --name").stdout.split()
                   for n in nodes[:-1]}
        where = {v: [n for n, names in running.items() if v in names] for v in vols}
        if p.returncode != 0 or any(len(w) != 1 for w in where.values()):
            raise SystemExit(f"bench: failover did not end with each domain once: {where}\n{p.stdout}{p.stderr}")
    finally:
        sh(f"{env['LAB_SCRIPT']} fault {dead} power-on")
    for v in vols:
        sh(f"{havirt} --yes domain destroy {v} >/dev/null", check=False)
    return {"seconds": seconds, "node": dead, "where": where}


def bench_home(env, nodes: list[str]) -> tuple[Path, str]:
    """A new havirt home (the lab's config.yaml) that knows `nodes`, and the
    command line of havirt on that home."""
    home = Path(tempfile.mkdtemp(prefix="havirt-bench-"))
    os.environ["BENCH_HOME"] = str(home)
    shutil.copy(Path(env["LAB_HOME"]) / "config.yaml", home / "config.yaml")
    havirt = f"{REPO / '.venv/bin/python'} {REPO / 'havirt.py'} --home {home}"
    bench_transport.add_nodes(havirt, nodes)
    return home, havirt


def homes(env, nodes: list[str]) -> tuple[Path, str, Path, str, list[str]]:
    """A home of the first DOMAIN_NODES nodes, with PER_NODE domains started on
    each (and bench-start, not running, in conf/), and one of every lab node
    with the same conf/: (home, its havirt command, home of all, its command,
    the domains)."""
    small = nodes[:DOMAIN_NODES]
    home, havirt = bench_home(env, small)
    print(f"bench: {len(nodes)} nodes; starting {PER_NODE} domains on each of {len(small)}", flush=True)
    names = start_domains(env, small, home)
    spare = re.sub(r"<name>[^<]+</name>", "<name>bench-start</name>",
                   (Path(env["LAB_DIR"]) / "xml" / "tiny1.xml").read_text())
    (home / "conf" / "bench-start.xml").write_text(re.sub(r"<uuid>[^<]+</uuid>", "", spare))
    every = Path(tempfile.mkdtemp(prefix="havirt-bench-all-"))
    shutil.copy(home / "config.yaml", every / "config.yaml")
    shutil.copytree(home / "conf", every / "conf")
    havirt_all = f"{REPO / '.venv/bin/python'} {REPO / 'havirt.py'} --home {every}"
    bench_transport.add_nodes(havirt_all, nodes)
    return home, havirt, every, havirt_all, names


def main() -> None:
    env = lab_env()
    nodes = [f"node{i}" for i in range(1, int(env["LAB_NODES"]) + 1)]
    home, havirt, every, havirt_all, names = homes(env, nodes)
    small = nodes[:DOMAIN_NODES]
    waited = settle()
    print(f"bench: {len(names)} domains running; settled after {waited:.0f} s", flush=True)
    sh(f"{havirt} node scan", check=False)  # warm: every node's libvirtd answered once

    results = {}
    rounds = []
    for r in range(NAIVE_RUNS):
        naive = timed(naive_cmd(env, small))
        floor = median_of(floor_cmd(env, small), RUNS)
        scan = median_of(f"{havirt} node scan -q", RUNS)
        rounds.append((naive, floor, scan))
        print(f"bench: round {r + 1}: naive {naive:.2f} s, floor {floor:.3f} s, havirt {scan:.3f} s",
              flush=True)
    results["naive"] = statistics.median(x[0] for x in rounds)
    results["floor"] = statistics.median(x[1] for x in rounds)
    results["scan"] = statistics.median(x[2] for x in rounds)
    results["transport"] = bench_transport.measure(havirt_all, every, floor_cmd(env, nodes),
                                                   script_floor_cmd(env, nodes, every))
    sizes = [k for k in (1, 2, 4, 8, 16, 32, 64, 100) if k < len(nodes)] + [len(nodes)]
    results["by_nodes"] = {k: median_of(f"{havirt_all} node scan -q {' '.join(nodes[:k])}", 3)
                           for k in sizes}
    results["readonly"] = readonly_times(havirt)
    results["state_load"], results["state_save"], results["state_bytes"] = state_io()
    results["failover"] = failover_time(env, small, havirt, home)
    results["etcd"] = bench_etcd.measure(env, home, "bench-start", nodes[0])
    write_report(results, len(small), len(nodes), len(names))
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(every, ignore_errors=True)


def write_report(r: dict, n_nodes: int, n_lab: int, n_domains: int) -> None:
    lines = [
        "# havirt benchmark",
        "",
        f"Run on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, by `make bench` (`bench/bench.py`):",
        f"a lab of {n_lab} nodes (namespaces with their own sshd and libvirtd), {n_domains} running "
        f"KVM domains on the first {n_nodes}. Medians; all figures from the same run. The scan of "
        f"every node, read-only commands, failover and etcd use those {n_nodes} nodes; the transports "
        f"and the scan by number of nodes, all {n_lab}.",
        "",
        f"## Scan of {n_nodes} nodes with their {n_domains} domains",
        "",
        "| way | seconds | ratio to havirt |",
        "| --- | ---: | ---: |",
        f"| naive: `ssh node virsh list`, then `ssh node virsh dominfo` per domain, in sequence | "
        f"{r['naive']:.2f} | {r['naive'] / r['scan']:.1f}x slower |",
        f"| floor: OpenSSH to all nodes in parallel, one session and one virsh each | "
        f"{r['floor']:.3f} | {r['scan'] / r['floor']:.2f}x (havirt / floor) |",
        f"| `havirt node scan` (whole command: Python start, SSH, parse, state write) | "
        f"{r['scan']:.3f} | 1 |",
        "",
        f"Targets: at least 10x faster than naive ({r['naive'] / r['scan']:.1f}x: "
        f"{'met' if r['naive'] / r['scan'] >= 10 else 'NOT met'}); within 1.25x of the floor "
        f"({r['scan'] / r['floor']:.2f}x: {'met' if r['scan'] / r['floor'] <= 1.25 else 'NOT met'}).",
        "",
        *bench_transport.report(r["transport"], n_lab, n_domains),
        "## havirt node scan by number of nodes",
        "",
        "paramiko, `ssh.parallel` 128; the first 8 nodes have the domains.",
        "",
        "| nodes | seconds |",
        "| ---: | ---: |",
        *[f"| {k} | {v:.3f} |" for k, v in r["by_nodes"].items()],
        "",
        "## Read-only commands (target: under 0.3 s, no paramiko import)",
        "",
        "| command | seconds |",
        "| --- | ---: |",
        *[f"| `havirt {k}` | {v:.3f} |" for k, v in r["readonly"].items() if isinstance(v, float)],
        "",
        f"paramiko imported by `node list`: {r['readonly']['paramiko imported by node list']}",
        "",
        "## State file of 1,000 nodes and 20,000 domains (target: under 1 s each)",
        "",
        f"load {r['state_load']:.3f} s, save {r['state_save']:.3f} s ({r['state_bytes'] / 1e6:.1f} MB)",
        "",
        "## Failover of a node that answers nothing (target: under 10 s)",
        "",
        f"Three block-volume domains (leases) on {r['failover']['node']}, which is then powered off "
        "(its packets go unanswered: the connect timeout is 5 s): `havirt --yes node failover` "
        f"took {r['failover']['seconds']:.1f} s to all three verified running elsewhere "
        f"({', '.join(f'{d} on {w[0]}' for d, w in sorted(r['failover']['where'].items()))}): "
        f"{'met' if r['failover']['seconds'] < 10 else 'NOT met'}.",
        "",
        *bench_etcd.report(r["etcd"], n_nodes),
    ]
    out = REPO / "docs" / "BENCHMARK.md"
    out.parent.mkdir(exist_ok=True)
    mark = "<!-- balance benchmark"
    old = out.read_text() if out.exists() else ""
    balance = old[old.index(mark):] if mark in old else ""
    out.write_text("\n".join(lines) + ("\n" + balance if balance else ""))
    print("\n".join(lines))
    print(f"bench: written to {out}")


def failover_only() -> None:
    """`bench.py failover`: the failover scenario alone, printed (no report
    written); any lab of 3 nodes or more."""
    env = lab_env()
    nodes = [f"node{i}" for i in range(1, int(env["LAB_NODES"]) + 1)]
    home, havirt = bench_home(env, nodes)
    r = failover_time(env, nodes, havirt, home)
    print(f"bench: failover of 3 domains of {r['node']} (powered off): {r['seconds']:.2f} s "
          f"({', '.join(f'{d} on {w[0]}' for d, w in sorted(r['where'].items()))})")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["failover"]:
        failover_only()
    elif sys.argv[1:]:
        raise SystemExit("usage: bench.py [failover]   (failover: that scenario alone)")
    else:
        main()
