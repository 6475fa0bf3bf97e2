"""Ganeti's hbal on havirt's clusters: the text backend file, a run, its moves.

The cluster is written in the htools text backend format (ganeti 3.0.2,
``src/Ganeti/HTools/Backend/Text.hs``: sections of groups, nodes,
instances, cluster tags and instance policies, ``|``-separated fields)
so that only memory and vCPUs count:

* one node group; every node has the same huge disk, no spindles in use
  and no CPUs reserved for the host (``nCpu`` 0), so the vCPU rule is
  havirt's (``vcpus / cpus <= vcpu-ratio``, the group policy's ratio);
* memory: ``t_mem = usable + 1``, ``n_mem = 0``, ``f_mem`` what is left.
  hbal refuses a move that leaves 0 MiB free, so the extra MiB makes its
  rule ``allocated + need <= usable``, havirt's;
* instances are ``sharedfile`` with no disk size and no secondary node:
  hbal moves them to any node (``FailoverToAny``), which for a running
  instance is ``gnt-instance migrate -n TARGET``, a live migration.
  (``diskless`` instances are not movable for hbal, ``plain`` and ``file``
  are tied to their node);
* ``--ignore-dynu``: no load data, so the load metrics (which otherwise
  count instances per node) stay 0.

hbal's score then is ``stdev(free memory share) + stdev(vCPU ratio)`` (each
counted twice at weight 0.5 in its table): :func:`hbal_score` computes it
the same way, and the bench checks it against what hbal prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from havirt.plan.balance import BDomain, BNode
from havirt.plan.balance.score import pstdev

_UUID = "00000000-0000-0000-0000-000000000001"
_DISK = 1 << 30  # MiB of disk on every node: never a constraint


def to_text(nodes: list[BNode], domains: list[BDomain]) -> str:
    """The cluster in hbal's text backend format."""
    ratio = {n.max_ratio for n in nodes}
    if len(ratio) != 1:
        raise ValueError("hbal has one vCPU ratio per node group")
    used = {n.name: 0 for n in nodes}
    for d in domains:
        used[d.node] += d.memory_mib
    groups = [f"default|{_UUID}|preferred||"]
    node_lines = [
        f"{n.name}|{n.usable_mib + 1}|0|{n.usable_mib + 1 - used[n.name]}|{_DISK}|{_DISK}|{n.cpus}"
        f"|N|{_UUID}|1||N|0|0|1.0"
        for n in nodes
    ]
    inst_lines = [
        f"{d.name}|{d.memory_mib}|0|{d.vcpus}|running|Y|{d.node}||sharedfile||1|-|N" for d in domains
    ]
    spec = "1,1,0,0,0,1;1073741824,1024,1073741824,16,8,12"
    policy = f"|1024,1,0,1,1,1|{spec}|sharedfile|{ratio.pop()!r}|32.0"
    sections = [groups, node_lines, inst_lines, [], [policy, "default" + policy]]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


def hbal_score(nodes: list[BNode], domains: list[BDomain]) -> float:
    """hbal's score of this placement (memory and vCPU terms; all others are 0)."""
    mem = {n.name: 0 for n in nodes}
    vcpus = {n.name: 0 for n in nodes}
    for d in domains:
        mem[d.node] += d.memory_mib
        vcpus[d.node] += d.vcpus
    free = [(n.usable_mib + 1 - mem[n.name]) / (n.usable_mib + 1) for n in nodes]
    ratio = [vcpus[n.name] / n.cpus for n in nodes]
    return pstdev(free) + pstdev(ratio)


@dataclass
class HbalRun:
    moves: list[tuple[str, str, str]]  # (instance, from, to)
    seconds: float
    initial: float  # hbal's own score, as it printed it
    final: float
    cached: str = ""  # when the run was read from the cache: the date it was made


_MOVE = re.compile(r"^\s*\d+\.\s+(\S+)\s+(\S+)\s+=>\s+(\S+)\s+(\S+)\s+a=(\S+)")


def version() -> str:
    """hbal's version line."""
    return subprocess.run(["hbal", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def cache_dir() -> Path:
    """Where runs are kept: ``$HAVIRT_HBAL_CACHE``, else ``~/.cache/havirt-bench/hbal``."""
    where = os.environ.get("HAVIRT_HBAL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "havirt-bench", "hbal")
    return Path(where)


def cached_run(text: str, ratio: float, extra: tuple[str, ...] = (), fresh: bool = False) -> HbalRun:
    """:func:`run` on the cluster ``text``, kept in :func:`cache_dir` by the
    exact input (the text, the options, hbal's version): hbal needs an hour
    and more at 100 nodes and 2,000 instances, and its answer depends on
    nothing else (it is deterministic). ``fresh``: run it again whatever."""
    key = hashlib.sha256("\n".join([version(), repr(ratio), *extra, text]).encode()).hexdigest()
    folder = cache_dir()
    entry = folder / f"{key}.json"
    if not fresh and entry.exists():
        data = json.loads(entry.read_text())
        data["moves"] = [tuple(m) for m in data["moves"]]
        return HbalRun(**data)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.txt"
    path.write_text(text)
    got = run(str(path), ratio, extra)
    path.unlink()
    got.cached = ""
    data = asdict(got)
    data["cached"] = time.strftime("%Y-%m-%d", time.gmtime())
    tmp = entry.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(entry)
    return got


def run(path: str, ratio: float, extra: tuple[str, ...] = ()) -> HbalRun:
    """Run ``hbal -t path`` and read its moves and scores. ``ratio``: the
    nodes' vCPU ratio, given again as ``--max-cpu`` (hbal 3.0.2 checks nodes
    against the cluster policy's ratio, 4.0 whatever the file says: without
    it every node above 4 counts as violating the policy and takes nothing)."""
    cmd = ["hbal", "-t", path, "--ignore-dynu", f"--max-cpu={ratio!r}", *extra]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    took = time.perf_counter() - start
    moves = []
    initial = final = float("nan")
    for line in out.splitlines():
        m = _MOVE.match(line)
        if m:
            if not m.group(5).startswith("fa:"):
                raise ValueError(f"hbal planned something other than a migration: {line!r}")
            moves.append((m.group(1), m.group(2), m.group(3)))
        elif line.startswith("Initial score:"):
            initial = float(line.split(":")[1])
        elif line.startswith("Cluster score improved from"):
            final = float(line.split()[-1])
    if not moves:
        final = initial
    return HbalRun(moves, took, initial, final)
