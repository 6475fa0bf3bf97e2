"""What a command costs with the etcd store against the home's files.

Part of `make bench` (bench.py calls measure() on its lab of 8 nodes), or on
its own with the lab up (3 nodes at least: the etcd members live in
node1..node3):  .venv/bin/python bench/bench_etcd.py

It starts the lab's three-member etcd (`lab etcd up`), makes a second home
from a copy of a home of files (`store migrate --to etcd`), and times the same
commands in both, alternating, in the same run: read-only commands
(`node list`, `domain list`, `log`), and `--yes domain start` of a small
domain (destroyed again between runs, not timed). Then `lab etcd down`.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchkit import lab_env
from benchkit import sh as _sh
from benchkit import timed as _timed

REPO = Path(__file__).resolve().parents[1]
RUNS = 7
STARTS = 5
READS = ("node list", "domain list", "log --tail 20")


def _havirt(home: Path) -> str:
    return f"{REPO / '.venv/bin/python'} {REPO / 'havirt.py'} --home {home}"


def _etcd_home(env: dict, files_home: Path) -> Path:
    """A copy of `files_home` moved into etcd (prefix /bench)."""
    import yaml
    home = Path(tempfile.mkdtemp(prefix="havirt-bench-etcd-"))
    shutil.copytree(files_home / "conf", home / "conf")
    shutil.copytree(files_home / "var", home / "var", ignore=shutil.ignore_patterns("havirt.lock"))
    cfg = yaml.safe_load((files_home / "config.yaml").read_text())
    cfg["store"] = {"endpoints": env["LAB_ETCD_ENDPOINTS"].split(","), "prefix": "/bench"}
    (home / "config.yaml").write_text(yaml.safe_dump(cfg))
    _sh(f"{_havirt(home)} --yes store migrate --to etcd")
    cfg["store"]["backend"] = "etcd"
    (home / "config.yaml").write_text(yaml.safe_dump(cfg))
    return home


def measure(env: dict, files_home: Path, domain: str, node: str) -> dict:
    """Medians in seconds: {command: (files, etcd)}; `domain` (in files_home's
    conf/, not running) is started on `node` for the start figures."""
    lab = env["LAB_SCRIPT"]
    _sh(f"{lab} etcd up")
    try:
        etcd_home = _etcd_home(lab_env(), files_home)
        homes = {"files": _havirt(files_home), "etcd": _havirt(etcd_home)}
        out: dict = {}
        for args in READS:
            times: dict = {"files": [], "etcd": []}
            for _ in range(RUNS):
                for kind, hv in homes.items():
                    times[kind].append(_timed(f"{hv} {args} >/dev/null 2>&1"))
            out[args] = tuple(statistics.median(times[k]) for k in ("files", "etcd"))
        starts: dict = {"files": [], "etcd": []}
        for _ in range(STARTS):
            for kind, hv in homes.items():
                starts[kind].append(_timed(f"{hv} --yes domain start {domain} {node} >/dev/null"))
                _sh(f"{hv} --yes domain destroy {domain} >/dev/null")
        out[f"--yes domain start {domain} {node}"] = tuple(statistics.median(starts[k])
                                                           for k in ("files", "etcd"))
        shutil.rmtree(etcd_home, ignore_errors=True)
        return out
    finally:
        _sh(f"{lab} etcd down")


def report(r: dict, n_nodes: int) -> list[str]:
    return [
        "## The etcd store against the home's files",
        "",
        f"The same home ({n_nodes} nodes) as files and moved into the lab's three-member etcd "
        "(one member in each of node1..node3), the commands alternating in one run; "
        "whole commands (Python start included).",
        "",
        "| command | files (s) | etcd (s) | etcd costs |",
        "| --- | ---: | ---: | ---: |",
        *[f"| `havirt {k}` | {f:.3f} | {e:.3f} | {e - f:+.3f} s |" for k, (f, e) in r.items()],
        "",
    ]


def main() -> None:
    """On its own: a home of files with the lab's nodes, then measure()."""
    env = lab_env()
    nodes = [f"node{i}" for i in range(1, int(env["LAB_NODES"]) + 1)]
    home = Path(tempfile.mkdtemp(prefix="havirt-bench-files-"))
    shutil.copy(Path(env["LAB_HOME"]) / "config.yaml", home / "config.yaml")
    (home / "conf").mkdir()
    shutil.copy(Path(env["LAB_HOME"]) / "conf" / "tiny1.xml", home / "conf" / "tiny1.xml")
    for i, n in enumerate(nodes, 1):
        _sh(f"{_havirt(home)} node add {n} --address 10.231.0.{10 + i}")
    r = measure(env, home, "tiny1", "node2")
    print("\n".join(report(r, len(nodes))))
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
