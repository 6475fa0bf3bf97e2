"""make bench, the transport part: a scan of many nodes with each SSH transport.

bench.py calls measure() with a home of every lab node (64 in `make bench`;
the first 8 run 5 domains each, the others none) whose config.yaml sets
ssh.parallel to its default (128: every node at once, like the floor). In
rounds (all figures from the same run, medians of the rounds' medians):
  - the floor: OpenSSH to all nodes at once, fresh sessions, one virsh each;
  - the same with havirt's own scan script of each node in place of that
    virsh (both drivers, the lease probe): the first scan's cost beyond
    OpenSSH's, without the script's extra work;
  - `havirt node scan` with paramiko (a fresh connection every time);
  - with openssh (`ssh.backend: openssh`): `persist: 0` (no sharing), the
    first scan (the shared connections closed before, it opens them), a
    second one within `ssh.persist` (it reuses them);
  - `havirt domain start` on those warm connections: the dry run (a scan,
    the plan) and `--yes` (a scan, virsh create, the check scan of the
    node), the domain destroyed again between runs (not timed).
Then, once, where the CPU of a warm scan goes: havirt and the ssh processes
it starts (this host's share, from getrusage of its children) against the
whole machine (/proc/stat; the lab's nodes share its cores, and so does any
other work on it).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchkit import median_of
from benchkit import sh as _sh
from benchkit import timed as _timed

RUNS = 3
ROUNDS = 3
START = "bench-start"


def _median(cmd: str, runs: int = RUNS) -> float:
    return median_of(cmd, runs)


def add_nodes(havirt: str, nodes: list[str]) -> None:
    """`havirt node add` of every node, 8 at a time (nodeK at 10.231.0.(10+K))."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: _sh(f"{havirt} node add node{k} --address 10.231.0.{10 + k}"),
                      [int(n[len("node"):]) for n in nodes]))


def configs(home: Path) -> dict[str, Path]:
    """The home's config.yaml with ssh.parallel 128 (its default), and two
    beside it with ssh.backend: openssh, sharing (persist 600) and not (0)."""
    import yaml
    base = yaml.safe_load((home / "config.yaml").read_text())
    base["ssh"]["parallel"] = 128
    (home / "config.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    out = {"paramiko": home / "config.yaml"}
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


def _busy() -> float:
    """CPU seconds the whole machine spent busy since boot."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def cpu_of(cmd: str) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds of `cmd` and what it started (and waited
    for), CPU seconds of the whole machine meanwhile."""
    before, busy = resource.getrusage(resource.RUSAGE_CHILDREN), _busy()
    t = time.perf_counter()
    _sh(cmd)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, own, _busy() - busy


def _round(havirt: str, home: Path, cfg: dict[str, Path], floor: str, script_floor: str) -> dict[str, float]:
    hv = {k: f"{havirt} --config {v}" for k, v in cfg.items()}
    r = {"floor": _median(floor), "script_floor": _median(script_floor),
         "paramiko": _median(f"{hv['paramiko']} node scan -q"),
         "fresh": _median(f"{hv['fresh']} node scan -q")}
    first = []
    for _ in range(RUNS):
        close_masters(home, cfg["shared"])
        first.append(_timed(f"{hv['shared']} node scan -q"))
    r["first"] = statistics.median(first)
    r["second"] = _median(f"{hv['shared']} node scan -q")
    r["start_dry"] = _median(f"{hv['shared']} domain start {START} node1 >/dev/null")
    starts = []
    for _ in range(RUNS):
        starts.append(_timed(f"{hv['shared']} --yes domain start {START} node1 >/dev/null"))
        _sh(f"{hv['shared']} --yes domain destroy {START} >/dev/null")
    r["start"] = statistics.median(starts)
    return r


def measure(havirt: str, home: Path, floor: str, script_floor: str) -> dict:
    """The figures (seconds) of ROUNDS rounds; `home` has every node and
    START in conf/ (not running); `floor` is the floor's shell command,
    `script_floor` the same running havirt's scan script."""
    cfg = configs(home)
    _sh(f"{havirt} --config {cfg['shared']} node scan -q")     # every node answered once
    rounds = []
    for i in range(ROUNDS):
        rounds.append(_round(havirt, home, cfg, floor, script_floor))
        x = rounds[-1]
        print(f"bench: transport round {i + 1}: floor {x['floor']:.2f} s "
              f"(with havirt's script {x['script_floor']:.2f} s), paramiko {x['paramiko']:.2f} s, "
              f"openssh fresh {x['fresh']:.2f} s, first {x['first']:.2f} s, second {x['second']:.2f} s, "
              f"start {x['start_dry']:.2f} s (dry run) {x['start']:.2f} s (--yes)", flush=True)
    out = {k: statistics.median(x[k] for x in rounds) for k in rounds[0]}
    split = [cpu_of(f"{havirt} --config {cfg['shared']} node scan -q") for _ in range(RUNS)]
    out["cpu_wall"], out["cpu_own"], out["cpu_all"] = (statistics.median(s[i] for s in split)
                                                       for i in range(3))
    close_masters(home, cfg["shared"])
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(r: dict, n_nodes: int, n_domains: int) -> list[str]:
    f = r["floor"]
    rows = [("floor (fresh OpenSSH sessions, all nodes in parallel, one virsh each)", f),
            ("the floor's sessions running havirt's scan script (both drivers, the lease probe) "
             "in place of its virsh", r["script_floor"]),
            ("`havirt node scan`, paramiko transport", r["paramiko"]),
            ("openssh, `persist: 0` (a fresh connection every time)", r["fresh"]),
            ("openssh, first scan (opens the shared connections)", r["first"]),
            ("openssh, second scan within `ssh.persist` (reuses them)", r["second"]),
            ("openssh, `havirt domain start` dry run on them (a scan, the plan)", r["start_dry"]),
            ("openssh, `havirt --yes domain start` on them (a scan, virsh create, "
             "the check scan of the node)", r["start"])]
    return [
        f"## Scan of {n_nodes} nodes with each transport",
        "",
        f"{n_nodes} lab nodes ({n_domains} running domains on the first 8, none on the others), "
        "`ssh.parallel` 128 (all nodes at once); whole commands, Python start included. "
        f"Medians of {ROUNDS} rounds of {RUNS} runs.",
        "",
        "| way | seconds | ratio to the floor |",
        "| --- | ---: | ---: |",
        *[f"| {name} | {s:.3f} | {s / f:.2f}x |" for name, s in rows],
        "",
        f"Targets: a first scan at most 1.0x the floor ({r['first'] / f:.2f}x: "
        f"{_met(r['first'] <= f)}), a second one at most 0.3x "
        f"({r['second'] / f:.2f}x: {_met(r['second'] <= 0.3 * f)}), `domain start` on warm "
        f"connections under 1 s ({r['start']:.2f} s: {_met(r['start'] < 1)}; its dry run "
        f"{r['start_dry']:.2f} s). Against the floor's sessions running havirt's own script, "
        f"the first scan is {r['first'] / r['script_floor']:.2f}x: what havirt adds to OpenSSH's "
        "own cost (Python, the shared connections, reading and recording), the script's extra "
        "work apart.",
        "",
        f"Where a warm scan's CPU goes (openssh, second scan, {r['cpu_wall']:.2f} s): havirt and the "
        f"ssh processes it starts used {r['cpu_own']:.2f} s of CPU, the whole machine "
        f"{r['cpu_all']:.2f} s. The rest ({r['cpu_all'] - r['cpu_own']:.2f} s) is the nodes' side "
        "(sshd's sessions, the shell, one virsh process and the lease probe on each node, "
        f"libvirtd) and the shared connections, which on this lab share the same {os.cpu_count()} cores "
        "(and any other work on the machine): a real cluster spreads it over its nodes.",
        "",
    ]
