"""make bench, balance part: havirt's planner against Ganeti's hbal, and alone up to 100 nodes.

    python bench/bench_balance.py           # all of it; rewrites the balance section of docs/BENCHMARK.md
    python bench/bench_balance.py --quick   # the clusters up to 120 domains, nothing written
    python bench/bench_balance.py --large   # havirt alone on the large clusters, nothing written

For each generated cluster (``clusters.COMPARISON``) both tools plan from the
same placement: hbal 3.0.2 (Debian's ganeti-htools, text backend, see
``hbal.py``) and ``plan_balance`` with the recommended ``min_gain``. Every
move of both is replayed against havirt's hard limits (``havirt.rules``);
each placement, at the end and after k moves, is scored by havirt's metric
and by hbal's (``hbal.hbal_score``, checked against the score hbal itself
prints for the start and for both final placements). Then havirt alone on
the larger clusters (``clusters.LARGE``, where hbal needs many minutes),
the stop rule at several sizes, and the planner's optional parts measured
on and off.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "unit"))

import hbal  # noqa: E402
from balance_reference import loads, need  # noqa: E402
from clusters import COMPARISON, LARGE, Shape, generate  # noqa: E402
from machine import machine  # noqa: E402

from havirt.plan.balance import (  # noqa: E402
    BDomain,
    BNode,
    plan_balance,
    planner,  # noqa: E402
    score,
)
from havirt.rules import fit as rules  # noqa: E402

# The recommended balance.min_gain (per node: a move must lower the score by
# min_gain / nodes); the caller passes it, there is no default in the planner.
MIN_GAIN = 0.03
SEED = 1
PREFIXES = (5, 10, 20, 40, 80)
MARK = "<!-- balance benchmark: written by bench/bench_balance.py -->"


@dataclasses.dataclass
class Trajectory:
    """A plan as the states it goes through: (havirt score, hbal score, MiB moved so far) after each move."""

    moves: int
    seconds: float
    states: list[tuple[float, float, int]]
    start: tuple[float, float]
    cpu: float = 0.0

    @property
    def final(self) -> tuple[float, float, int]:
        return self.states[-1] if self.states else (*self.start, 0)

    def at(self, k: int) -> tuple[float, float]:
        s = self.states[min(k, len(self.states)) - 1] if self.states else self.start
        return s[0], s[1]

    def reach(self, target: tuple[float, float], metric: int) -> int | None:
        """Moves until the score by ``metric`` (0 havirt, 1 hbal) is at most the target's."""
        if self.start[metric] <= target[metric] + 1e-12:
            return 0
        return next((k + 1 for k, s in enumerate(self.states) if s[metric] <= target[metric] + 1e-12), None)


def walk(nodes: list[BNode], domains: list[BDomain], moves: list[tuple[str, str, str]]) -> tuple[list, list[BDomain]]:
    """Replay migrations (domain, from, to) against havirt.rules; the states and the end placement."""
    now = {d.name: d for d in domains}
    states, moved = [], 0
    for name, src, dst in moves:
        d = now[name]
        if d.node != src:
            raise AssertionError(f"{name} is on {d.node}, not {src}")
        problems = rules.fit_problems(loads(nodes, list(now.values()))[dst], need(d))
        if problems:
            raise AssertionError(f"{name} -> {dst} breaks a limit: {problems}")
        now[name] = dataclasses.replace(d, node=dst)
        moved += d.memory_mib
        placed = list(now.values())
        states.append((score(nodes, placed), hbal.hbal_score(nodes, placed), moved))
    return states, list(now.values())


def hbal_prints(nodes: list[BNode], domains: list[BDomain], tmp: Path, name: str) -> float:
    """The score hbal prints for this placement (it plans nothing: -l 0)."""
    path = tmp / f"{name}.txt"
    path.write_text(hbal.to_text(nodes, domains))
    return hbal.run(str(path), ("-l", "0")).initial


def compare(shape: Shape, tmp: Path) -> dict:
    nodes, doms = generate(shape, SEED)
    path = tmp / f"{shape.name}.txt"
    path.write_text(hbal.to_text(nodes, doms))
    print(f"bench: {shape.name}: hbal ...", flush=True)
    hb = hbal.run(str(path))
    start = (score(nodes, doms), hbal.hbal_score(nodes, doms))
    hb_states, hb_end = walk(nodes, doms, hb.moves)
    cpu, wall = time.process_time(), time.perf_counter()
    plan = plan_balance(nodes, doms, None, MIN_GAIN)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    hv_states, hv_end = walk(nodes, doms, [(m.domain, m.source, m.target) for m in plan.moves])
    checks = [(hb.initial, start[1]), (hb.final, hb_states[-1][1] if hb_states else start[1]),
              (hbal_prints(nodes, hv_end, tmp, shape.name + "-havirt"), hv_states[-1][1] if hv_states else start[1])]
    for printed, ours in checks:
        if abs(printed - ours) > 1e-6:
            raise AssertionError(f"{shape.name}: hbal prints {printed}, hbal_score says {ours}")
    return {
        "shape": shape, "nodes": len(nodes), "domains": len(doms),
        "hbal": Trajectory(len(hb.moves), hb.seconds, hb_states, start),
        "havirt": Trajectory(len(plan.moves), wall, hv_states, start, cpu),
        "n_plus_1": (plan.n_plus_1_before.failing, plan.n_plus_1_after.failing),
    }


def timed_plan(nodes, doms, **kw) -> tuple[float, float, object]:
    cpu, wall = time.process_time(), time.perf_counter()
    plan = plan_balance(nodes, doms, None, kw.pop("min_gain", MIN_GAIN), **kw)
    return time.process_time() - cpu, time.perf_counter() - wall, plan


def large(shape: Shape) -> dict:
    nodes, doms = generate(shape, SEED)
    print(f"bench: {shape.name} ...", flush=True)
    out = {"shape": shape, "nodes": len(nodes), "domains": len(doms), "score": score(nodes, doms)}
    for label, n1 in (("on", True), ("off", False)):
        runs = [timed_plan(nodes, doms, keep_n_plus_1=n1) for _ in range(3)]
        cpu, wall, plan = sorted(runs, key=lambda r: r[0])[1]
        out[label] = {"cpu": cpu, "wall": wall, "moves": len(plan.moves), "after": plan.score_after,
                      "mib": plan.memory_mib, "n1": plan.n_plus_1_after.failing if n1 else None,
                      "n1_before": plan.n_plus_1_before.failing if n1 else None}
    return out


def stop_rule() -> list[dict]:
    """One shape at several sizes: the per-node rule against the old absolute one."""
    rows = []
    for n in (5, 10, 20, 50, 100):
        nodes, doms = generate(Shape(f"size{n}", n, 20 * n), SEED)
        row = {"nodes": n, "domains": len(doms), "score": score(nodes, doms)}
        for label, mg in (("per_node", MIN_GAIN), ("absolute", 0.002 * n)):
            plan = plan_balance(nodes, doms, None, mg)
            row[label] = (len(plan.moves), plan.score_after, plan.memory_mib)
        rows.append(row)
    return rows


VARIANTS = {
    "default": {},
    "no look-ahead": {"LOOKAHEAD": 0},
    "look-ahead everywhere": {"LOOKAHEAD_MAX_WORK": 10**9},
    "wider search (16 nodes)": {"PRUNE_K": 16},
    "no cost preference": {"CHEAP_WINDOW": 0.0},
}


def variants(shapes: list[Shape]) -> dict:
    """Each optional part of the planner off (or wider): totals over ``shapes``."""
    saved = {k: getattr(planner, k) for k in ("LOOKAHEAD", "LOOKAHEAD_MAX_WORK", "PRUNE_K", "CHEAP_WINDOW")}
    out = {}
    for label, change in VARIANTS.items():
        print(f"bench: variant {label} ...", flush=True)
        for k, v in change.items():
            setattr(planner, k, v)
        rows = []
        for shape in shapes:
            nodes, doms = generate(shape, SEED)
            cpu, _, plan = timed_plan(nodes, doms)
            rows.append((shape.name, len(plan.moves), plan.score_after, plan.memory_mib, cpu))
        out[label] = rows
        for k, v in saved.items():
            setattr(planner, k, v)
    return out


# -- the report ----------------------------------------------------------------------------


def gib(mib: int) -> str:
    return f"{mib / 1024:,.0f}"


def comparison_table(results: list[dict]) -> list[str]:
    lines = [
        "| cluster | tool | moves | time (s) | score: havirt / hbal metric | memory migrated (GiB) "
        "| moves to reach hbal's final score: havirt / hbal metric |",
        "| --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for r in results:
        hb, hv = r["hbal"], r["havirt"]
        target = hb.final
        name = f"{r['nodes']} nodes / {r['domains']} ({r['shape'].name})"
        reach = [hv.reach(target, m) for m in (0, 1)]
        lines.append(f"| {name} | hbal | {hb.moves} | {hb.seconds:.2f} | {hb.final[0]:.4f} / {hb.final[1]:.4f} "
                     f"| {gib(hb.final[2])} | {hb.moves} / {hb.moves} |")
        lines.append(f"| | havirt | {hv.moves} | {hv.cpu:.2f} | {hv.final[0]:.4f} / {hv.final[1]:.4f} "
                     f"| {gib(hv.final[2])} | {' / '.join('never' if x is None else str(x) for x in reach)} |")
    return lines


def prefix_table(results: list[dict]) -> list[str]:
    head = " | ".join(f"after {k}" for k in PREFIXES)
    lines = [f"| cluster | tool | start | {head} |", "| --- | --- | --- |" + " --- |" * len(PREFIXES)]
    for r in results:
        for tool in ("hbal", "havirt"):
            p = r[tool]
            cells = [f"{p.at(k)[0]:.3f} / {p.at(k)[1]:.3f}" if k <= p.moves else "" for k in PREFIXES]
            lines.append(f"| {r['shape'].name if tool == 'hbal' else ''} | {tool} | "
                         f"{p.start[0]:.3f} / {p.start[1]:.3f} | {' | '.join(cells)} |")
    return lines


def verdicts(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        hb, hv = r["hbal"], r["havirt"]
        reach = [hv.reach(hb.final, m) for m in (0, 1)]
        got = {
            "reaches hbal's final score in no more moves (havirt metric)": reach[0] is not None and reach[0] <= hb.moves,
            "same, hbal's metric": reach[1] is not None and reach[1] <= hb.moves,
            "ends lower on havirt's metric": hv.final[0] < hb.final[0],
            "ends lower on hbal's metric": hv.final[1] < hb.final[1],
            "migrates no more memory": hv.final[2] <= hb.final[2],
        }
        missed = [k for k, ok in got.items() if not ok]
        out.append(f"- {r['shape'].name}: " + ("every target met" if not missed else "missed: " + "; ".join(missed)))
    return out


def hbal_version() -> str:
    import subprocess
    return subprocess.run(["hbal", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def report(results, big, sizes, var, started) -> str:
    lines = [MARK, "", "## Balance: havirt against Ganeti's hbal", "",
             f"Run on {started:%Y-%m-%d %H:%M} UTC, {machine(load=True)}, by `make bench` "
             f"(`bench/bench_balance.py`), one run each; {hbal_version()}.", "",
             "Generated clusters (`bench/clusters.py`, seed 1), domains crowded on the first nodes; "
             "only memory and vCPUs count (hbal: text backend, one node group, `sharedfile` instances "
             "of no disk, so its moves are live migrations to any node; `--ignore-dynu`; see `bench/hbal.py`). "
             f"havirt: `plan_balance(..., min_gain={MIN_GAIN})` with N+1 kept (the default). Every move of both "
             "tools was replayed against havirt's hard limits: none broke one. hbal's metric is "
             "stdev(free memory) + stdev(vCPU ratio); havirt's is stdev(free memory) + 0.5 stdev(vCPU ratio); "
             "hbal's printed score matched ours for the start and both final placements. "
             "Time: hbal wall clock; havirt CPU time of the planning call.",
             "", *comparison_table(results), "", "Targets (reach hbal's final score in no more moves, end lower "
             "on both metrics, migrate no more memory):", "", *verdicts(results), "",
             "### Score after k moves (havirt / hbal metric)", "",
             "What a plan cut short leaves (`--max-moves k`, or a migration that fails at k + 1).", "",
             *prefix_table(results), ""]
    return "\n".join(lines + large_section(big) + sizes_section(sizes) + variants_section(var)) + "\n"


def large_section(big: list[dict]) -> list[str]:
    lines = ["### havirt alone, larger clusters (target: planning within 2 s at 100 nodes / 2,000 domains)", "",
             "Median of 3 (CPU time of the call; wall time in brackets, on a shared machine).", "",
             "| cluster | score before | N+1 kept: s | moves | score after | GiB moved "
             "| nodes whose loss is fatal, before -> after | N+1 off: s | moves | score after |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for b in big:
        on, off = b["on"], b["off"]
        lines.append(f"| {b['nodes']} / {b['domains']} ({b['shape'].name}) | {b['score']:.4f} | {on['cpu']:.2f} "
                     f"({on['wall']:.2f}) | {on['moves']} | {on['after']:.4f} | {gib(on['mib'])} | "
                     f"{len(on['n1_before'])} -> {len(on['n1'])} | {off['cpu']:.2f} ({off['wall']:.2f}) | "
                     f"{off['moves']} | {off['after']:.4f} |")
    return lines + [""]


def sizes_section(sizes: list[dict]) -> list[str]:
    lines = ["### The stop rule at several sizes", "",
             f"One shape (20 domains a node) at 5 to 100 nodes: moves, final score and GiB moved, with the "
             f"per-node rule (`min_gain` {MIN_GAIN}: a move must gain {MIN_GAIN} / nodes) and with the "
             "former absolute rule at its default (a move must gain 0.002, whatever the size).", "",
             "| nodes / domains | score before | per node: moves, score, GiB | absolute: moves, score, GiB |",
             "| --- | ---: | --- | --- |"]
    for s in sizes:
        cells = [f"{m}, {sc:.4f}, {gib(mib)}" for m, sc, mib in (s["per_node"], s["absolute"])]
        lines.append(f"| {s['nodes']} / {s['domains']} | {s['score']:.4f} | {cells[0]} | {cells[1]} |")
    return lines + [""]


def variants_section(var: dict) -> list[str]:
    lines = ["### Do the optional parts earn their place?", "",
             "Each changed alone, on every cluster above (seed 1): total moves, sum of final scores, GiB moved, "
             "CPU seconds, and the slowest single plan.", "",
             "| variant | moves | sum of final scores | GiB moved | CPU s | slowest plan (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, rows in var.items():
        lines.append(f"| {label} | {sum(r[1] for r in rows)} | {sum(r[2] for r in rows):.4f} | "
                     f"{gib(sum(r[3] for r in rows))} | {sum(r[4] for r in rows):.2f} | "
                     f"{max(r[4] for r in rows):.2f} |")
    return lines


def write(section: str) -> Path:
    out = REPO / "docs" / "BENCHMARK.md"
    text = out.read_text() if out.exists() else "# havirt benchmark\n"
    head = text.split(MARK)[0].rstrip("\n")
    out.write_text(head + "\n\n" + section)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small clusters only; write nothing")
    ap.add_argument("--large", action="store_true", help="havirt alone on the large clusters; write nothing")
    args = ap.parse_args()
    if args.large:
        print("\n".join(large_section([large(s) for s in LARGE])))
        return
    started = datetime.now(timezone.utc)
    shapes = [s for s in COMPARISON if not args.quick or s.domains <= 120]
    with tempfile.TemporaryDirectory(prefix="havirt-hbal-") as tmp:
        results = [compare(s, Path(tmp)) for s in shapes]
    big = [large(s) for s in (LARGE if not args.quick else LARGE[1:2])]
    sizes = stop_rule()
    var = variants(shapes + (LARGE if not args.quick else []))
    section = report(results, big, sizes, var, started)
    print(section)
    if not args.quick:
        print(f"bench: written to {write(section)}")


if __name__ == "__main__":
    main()
