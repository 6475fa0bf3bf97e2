"""The planner of another git revision on the comparison clusters (bench_balance.py --against REV).

The revision's ``havirt/`` is taken out of git (``git archive``) into a
temporary folder and run in a Python of its own, with its own defaults
(``balance.min_gain`` of its config.yaml schema, N+1 kept); it gets each
cluster as plain data and gives back its moves and the CPU time of the
planning call (median of ``repeat``). The moves are then replayed and
scored here like every other plan.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from clusters import generate

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from havirt.plan.balance import BDomain, BNode, plan_balance
from havirt.store.config import SCHEMA
min_gain = SCHEMA["balance"]["min_gain"][1]
out = []
for job in json.load(sys.stdin):
    nodes = [BNode(**n) for n in job["nodes"]]
    doms = [BDomain(**d) for d in job["domains"]]
    runs = []
    for _ in range(job["repeat"]):
        cpu = time.process_time()
        plan = plan_balance(nodes, doms, None, min_gain)
        runs.append((time.process_time() - cpu, [(m.domain, m.source, m.target) for m in plan.moves]))
    runs.sort(key=lambda r: r[0])
    out.append({"cpu": runs[len(runs) // 2][0], "moves": runs[len(runs) // 2][1], "min_gain": min_gain})
json.dump(out, sys.stdout)
"""


def measure(rev: str, results: list[dict], repeat: int = 3) -> dict:
    """For each comparison result: the Trajectory of revision ``rev``'s plan, by cluster name."""
    from bench_balance import REPO, SEED, Trajectory, fatal, state_of, walk
    jobs, clusters = [], []
    for r in results:
        nodes, doms = generate(r["shape"], SEED)
        clusters.append((r["shape"].name, nodes, doms))
        jobs.append({"repeat": repeat if len(nodes) >= 100 else 1,
                     "nodes": [vars(n) for n in nodes],
                     "domains": [vars(d) for d in doms]})
        assert all(d.allowed is None for d in doms), "plain data: the comparison clusters see every disk"
    with tempfile.TemporaryDirectory(prefix="havirt-against-") as tmp:
        tar = subprocess.run(["git", "-C", str(REPO), "archive", rev, "havirt"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=tar.stdout, check=True)
        print(f"bench: the planner of {rev} ...", flush=True)
        done = subprocess.run([sys.executable, "-c", CHILD, tmp], input=json.dumps(jobs), text=True,
                              capture_output=True, check=True)
    out = {}
    for (name, nodes, doms), got in zip(clusters, json.loads(done.stdout)):
        moves = [tuple(m) for m in got["moves"]]
        states, end = walk(nodes, doms, moves)
        out[name] = Trajectory(len(moves), got["cpu"], states, state_of(nodes, doms, 0),
                               (len(fatal(nodes, doms)), len(fatal(nodes, end))), f"{rev} (min_gain {got['min_gain']})")
    return out
