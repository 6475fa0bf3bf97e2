"""make bench: havirt's scan against the naive way and the parallel OpenSSH floor.

Needs the lab up with 8 nodes (make bench brings it up and down). Starts 5
domains on each node, lets them settle, then measures in one run (so the
ratios compare like with like on this shared, noisy machine):
  - the naive loop: for each node `ssh node virsh list --all`, then for each
    domain `ssh node virsh dominfo NAME`, node after node;
  - the floor: OpenSSH to all nodes at once, one session and one virsh each;
  - havirt node scan (the whole command, process start included);
  - the same with the openssh transport (ssh.backend: openssh): fresh
    connections (persist 0), the first scan (it opens the shared
    connections) and a second one within ssh.persist (it reuses them), and
    a dry run of `domain start` on warm connections;
  - havirt scan wall time for 1, 2, 4 and 8 nodes;
  - read-only commands (no paramiko import) wall time;
  - state load and save at 1,000 nodes and 20,000 domains;
  - failover of three block-volume domains (leases) of a node powered off
    (`lab fault NODE power-off`: its packets go unanswered), from the command
    to all three verified running elsewhere;
  - read-only commands and a start with the etcd store against files
    (bench_etcd.py: the lab's three-member etcd).
Writes docs/BENCHMARK.md, keeping the balance section (bench_balance.py writes it).
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
from machine import machine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PER_NODE = 5
RUNS = 5
NAIVE_RUNS = 3


def lab_env() -> dict:
    env = {}
    for line in (REPO / "tests/lab/run/lab.env").read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    return env


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


def openssh_configs(home: Path) -> dict[str, Path]:
    """config.yaml with ssh.backend: openssh, sharing (persist 600) and not (0)."""
    import yaml
    base = yaml.safe_load((home / "config.yaml").read_text())
    out = {}
    for name, persist in (("shared", 600), ("fresh", 0)):
        cfg = {**base, "ssh": {**base["ssh"], "backend": "openssh", "persist": persist}}
        out[name] = home / f"openssh-{name}.yaml"
        out[name].write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def close_masters(home: Path, config: Path) -> None:
    """`ssh -O exit` of every node's shared connection (as havirt names them)."""
    from havirt.remote.openssh import OpenSSHRunner
    from havirt.remote.transport import Target
    from havirt.store.config import load_config
    from havirt.store.state import load_state
    nodes = load_state(home / "var" / "state.yaml").nodes
    r = OpenSSHRunner(load_config(config).ssh,
                      {n: Target(n, x.address, x.user, x.port) for n, x in nodes.items()})
    for n in r.targets:
        subprocess.run(r.control_argv(n, "exit"), capture_output=True, timeout=30)


def openssh_times(havirt: str, home: Path, configs: dict[str, Path]) -> dict[str, float]:
    shared, fresh = (f"{havirt} --config {configs[k]}" for k in ("shared", "fresh"))
    cold = []
    for _ in range(RUNS):
        close_masters(home, configs["shared"])
        cold.append(timed(f"{shared} node scan -q"))
    timed(f"{shared} node scan -q")                    # the masters are up
    return {"fresh": median_of(f"{fresh} node scan -q", RUNS), "first": statistics.median(cold),
            "second": median_of(f"{shared} node scan -q", RUNS),
            "start": median_of(f"{shared} domain start bench-start node1 >/dev/null", RUNS)}


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
    `havirt --yes node failover NODE`; each must then run on exactly one other node."""
    dead, vols = nodes[-1], ["vol1", "vol2", "vol3"]
    for v in vols:
        shutil.copy(Path(env["LAB_HOME"]) / "conf" / f"{v}.xml", home / "conf" / f"{v}.xml")
        sh(f"{havirt} --yes domain start {v} {dead} >/dev/null")
    sh(f"{havirt} node scan -q", check=False)
    sh(f"{env['LAB_SCRIPT']} fault {dead} power-off")
    try:
        t = time.perf_counter()
        p = sh(f"{havirt} --yes node failover {dead}", check=False)
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


def main() -> None:
    env = lab_env()
    nodes = [f"node{i}" for i in range(1, int(env["LAB_NODES"]) + 1)]
    home = Path(tempfile.mkdtemp(prefix="havirt-bench-"))
    os.environ["BENCH_HOME"] = str(home)
    shutil.copy(Path(env["LAB_HOME"]) / "config.yaml", home / "config.yaml")
    havirt = f"{REPO / '.venv/bin/python'} {REPO / 'havirt.py'} --home {home}"
    for i, n in enumerate(nodes, 1):
        sh(f"{havirt} node add {n} --address 10.231.0.{10 + i}")
    print(f"bench: {len(nodes)} nodes; starting {PER_NODE} domains on each", flush=True)
    names = start_domains(env, nodes, home)
    spare = re.sub(r"<name>[^<]+</name>", "<name>bench-start</name>",
                   (Path(env["LAB_DIR"]) / "xml" / "tiny1.xml").read_text())
    (home / "conf" / "bench-start.xml").write_text(re.sub(r"<uuid>[^<]+</uuid>", "", spare))
    configs = openssh_configs(home)
    waited = settle()
    print(f"bench: {len(names)} domains running; settled after {waited:.0f} s", flush=True)
    sh(f"{havirt} node scan", check=False)  # warm: every node's libvirtd answered once

    results = {}
    rounds = []
    for r in range(NAIVE_RUNS):
        naive = timed(naive_cmd(env, nodes))
        floor = median_of(floor_cmd(env, nodes), RUNS)
        scan = median_of(f"{havirt} node scan -q", RUNS)
        ossh = openssh_times(havirt, home, configs)
        rounds.append((naive, floor, scan, ossh))
        print(f"bench: round {r + 1}: naive {naive:.2f} s, floor {floor:.3f} s, havirt {scan:.3f} s, "
              f"openssh fresh {ossh['fresh']:.3f} s, first {ossh['first']:.3f} s, "
              f"second {ossh['second']:.3f} s", flush=True)
    results["naive"] = statistics.median(x[0] for x in rounds)
    results["floor"] = statistics.median(x[1] for x in rounds)
    results["scan"] = statistics.median(x[2] for x in rounds)
    results["openssh"] = {k: statistics.median(x[3][k] for x in rounds) for k in rounds[0][3]}
    close_masters(home, configs["shared"])
    results["by_nodes"] = {k: median_of(f"{havirt} node scan -q {' '.join(nodes[:k])}", RUNS)
                           for k in (1, 2, 4, 8) if k <= len(nodes)}
    results["readonly"] = readonly_times(havirt)
    results["state_load"], results["state_save"], results["state_bytes"] = state_io()
    results["failover"] = failover_time(env, nodes, havirt, home)
    results["etcd"] = bench_etcd.measure(env, home, "bench-start", nodes[0])
    write_report(results, len(nodes), len(names))
    shutil.rmtree(home, ignore_errors=True)


def openssh_report(r: dict) -> list[str]:
    o, floor = r["openssh"], r["floor"]
    return [
        "## Scan with the openssh transport (`ssh.backend: openssh`)",
        "",
        "The same scan, the same nodes, in the same rounds; the floor opens a fresh",
        "connection to every node, as above.",
        "",
        "| way | seconds | ratio to the floor |",
        "| --- | ---: | ---: |",
        f"| floor (fresh OpenSSH sessions, all nodes in parallel) | {floor:.3f} | 1 |",
        f"| `havirt node scan`, paramiko transport | {r['scan']:.3f} | {r['scan'] / floor:.2f}x |",
        f"| openssh, `persist: 0` (a fresh connection every time) | {o['fresh']:.3f} | "
        f"{o['fresh'] / floor:.2f}x |",
        f"| openssh, first scan (opens the shared connections) | {o['first']:.3f} | "
        f"{o['first'] / floor:.2f}x |",
        f"| openssh, second scan within `ssh.persist` (reuses them) | {o['second']:.3f} | "
        f"{o['second'] / floor:.2f}x |",
        f"| openssh, `havirt domain start` dry run (a scan, the plan) on them | {o['start']:.3f} | "
        f"{o['start'] / floor:.2f}x |",
        "",
        f"Targets: a first scan at most 1.0x the floor ({o['first'] / floor:.2f}x: "
        f"{'met' if o['first'] <= floor else 'NOT met'}), a second one at most 0.3x "
        f"({o['second'] / floor:.2f}x: {'met' if o['second'] <= 0.3 * floor else 'NOT met'}), "
        f"`domain start` under 1 s ({o['start']:.2f} s: {'met' if o['start'] < 1 else 'NOT met'}).",
        "",
    ]


def write_report(r: dict, n_nodes: int, n_domains: int) -> None:
    lines = [
        "# havirt benchmark",
        "",
        f"Run on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, by `make bench` (`bench/bench.py`):",
        f"a lab of {n_nodes} nodes (namespaces with their own sshd and libvirtd), "
        f"{n_domains} running KVM domains. Medians; all figures from the same run.",
        "",
        "## Scan of every node",
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
        *openssh_report(r),
        "## havirt node scan by number of nodes",
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


if __name__ == "__main__":
    main()
