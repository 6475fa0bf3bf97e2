"""The balance section of docs/BENCHMARK.md, from what bench_balance.py measured."""

from __future__ import annotations

from machine import machine

PREFIXES = (5, 10, 20, 40, 80)
# The planning time target, at 100 nodes
TIME_LIMIT = 2.0


def gib(mib: int) -> str:
    return f"{mib / 1024:,.0f}"


def _reach(t, target) -> str:
    return " / ".join("never" if x is None else str(x) for x in (t.reach(target[0], 0), t.reach(target[1], 1)))


def _row(name: str, t, target) -> str:
    f = t.final
    return (f"| {name} | {t.label} | {t.moves} | {t.seconds:.2f} | {f[0]:.4f} / {f[1]:.4f} | {f[2]:.4f} / {f[3]:.4f} "
            f"| {gib(f[4])} | {t.n1[0]} -> {t.n1[1]} | {_reach(t, target)} |")


def comparison_table(results: list[dict]) -> list[str]:
    lines = [
        "| cluster | planner | moves | time (s) | score: havirt / hbal metric | spread of free memory / "
        "of vCPU ratios | GiB migrated | nodes whose loss is fatal, before -> after "
        "| moves to reach hbal's final score: havirt / hbal metric |",
        "| --- | --- | ---: | ---: | --- | --- | ---: | --- | --- |",
    ]
    for r in results:
        hb = r["hbal"]
        target = hb.final[:2]
        name = f"{r['nodes']} nodes / {r['domains']} ({r['shape'].name})"
        lines.append(_row(name, hb, target))
        lines += [_row("", t, target) for t in r["runs"]]
    return lines


def judged(r: dict) -> tuple:
    """The runs the targets are judged on: like for like with hbal (N+1 off
    when hbal's plan makes a node's loss fatal), default weights, hbal's weights."""
    runs = r["runs"] if r["like"] else r["runs"][2:]
    return runs[0], runs[1]


def verdict(r: dict) -> dict[str, bool | None]:
    hb = r["hbal"]
    default, hbal_weights = judged(r)
    d_reach = default.reach(hb.final[0], 0)
    w_reach = hbal_weights.reach(hb.final[1], 1)
    f, h = default.final, hb.final
    dominated = h[2] <= f[2] + 1e-9 and h[3] <= f[3] + 1e-9 and (h[2] < f[2] - 1e-9 or h[3] < f[3] - 1e-9)
    return {
        "reaches hbal's final score in no more moves (havirt's metric and weights)":
            d_reach is not None and d_reach <= hb.moves,
        "with hbal's weights, reaches hbal's final score in no more moves on hbal's metric":
            w_reach is not None and w_reach <= hb.moves,
        "not left behind hbal's end on both spreads (memory and vCPU)": not dominated,
        f"plans within {TIME_LIMIT:g} s": None if r["nodes"] < 100 else
            all(t.seconds < TIME_LIMIT for t in r["runs"]),
    }


def verdicts(results: list[dict]) -> list[str]:
    out = []
    met = {}
    for r in results:
        got = verdict(r)
        for k, ok in got.items():
            if ok is not None:
                met.setdefault(k, [0, 0])
                met[k][0] += ok
                met[k][1] += 1
        missed = [k for k, ok in got.items() if ok is False]
        how = "" if r["like"] else " (judged with N+1 off, as hbal plans: its plan makes a node's loss fatal)"
        out.append(f"- {r['shape'].name}: " + ("every target met" if not missed else "missed: " + "; ".join(missed))
                   + how)
    out += ["", "In all: " + "; ".join(f"{k}: {a} of {b}" for k, (a, b) in met.items()) + "."]
    return out


def _reach_summary(rows: list[dict], which: int) -> tuple[int, int, int, list[str]]:
    """(shapes met, shapes, hbal's moves less havirt's summed where havirt
    reaches hbal's final score, the misses) on the run ``which`` of ``judged``
    (0: havirt's metric and weights, 1: hbal's)."""
    met, saved, missed = 0, 0, []
    for r in rows:
        t, hb = judged(r)[which], r["hbal"]
        k = t.reach(hb.final[which], which)
        if k is not None:
            saved += hb.moves - k
        if k is not None and k <= hb.moves:
            met += 1
        else:
            missed.append(f"{r['shape'].name} ({'never' if k is None else f'{k} against {hb.moves}'})")
    return met, len(rows), saved, missed


def seeds_section(results: list[dict], others: dict[int, list[dict]]) -> list[str]:
    small = {r["shape"].name for r in next(iter(others.values()))}
    by_seed = {results[0]["seed"]: [r for r in results if r["shape"].name in small]}
    if set(others) & set(by_seed):
        raise ValueError("the other seeds must differ from the first")
    by_seed.update(others)
    first = results[0]["seed"]
    lines = ["### The same shapes from other seeds", "",
             f"The shapes above of up to {max(r['nodes'] for r in by_seed[first])} nodes, generated again "
             f"from other seeds: the planner's settings were chosen on seed {first}, so its figures there "
             "may flatter it. Moves saved: hbal's moves less havirt's, to reach hbal's final score, summed over the "
             "shapes where havirt reaches it (negative: havirt needs more).", "",
             "| seed | shapes | reach hbal's final score in no more moves: havirt's metric / hbal's weights "
             "| moves saved: havirt's metric / hbal's weights | misses: havirt's metric; hbal's weights |",
             "| ---: | ---: | --- | --- | --- |"]
    for seed, rows in sorted(by_seed.items()):
        d, w = _reach_summary(rows, 0), _reach_summary(rows, 1)
        lines.append(f"| {seed} | {len(rows)} | {d[0]} / {w[0]} | {d[2]} / {w[2]} | "
                     f"{', '.join(d[3]) or 'none'}; {', '.join(w[3]) or 'none'} |")
    return lines + [""]


def prefix_table(results: list[dict]) -> list[str]:
    head = " | ".join(f"after {k}" for k in PREFIXES)
    lines = [f"| cluster | planner | start | {head} |", "| --- | --- | --- |" + " --- |" * len(PREFIXES)]
    for r in results:
        for q, t in enumerate([r["hbal"], r["runs"][0]]):
            cells = [f"{t.at(k)[0]:.3f} / {t.at(k)[1]:.3f}" if k <= t.moves else "" for k in PREFIXES]
            lines.append(f"| {r['shape'].name if q == 0 else ''} | {t.label} | "
                         f"{t.start[0]:.3f} / {t.start[1]:.3f} | {' | '.join(cells)} |")
    return lines


def against_table(results: list[dict], old: dict) -> list[str]:
    lines = ["| cluster | planner | moves | CPU s | score: havirt / hbal metric | GiB migrated "
             "| moves to reach hbal's final score: havirt / hbal metric |",
             "| --- | --- | ---: | ---: | --- | ---: | --- |"]
    for r in results:
        hb = r["hbal"]
        for q, t in enumerate((old[r["shape"].name], r["runs"][0])):
            f = t.final
            lines.append(f"| {r['shape'].name if q == 0 else ''} | {t.label} | {t.moves} | {t.seconds:.2f} | "
                         f"{f[0]:.4f} / {f[1]:.4f} | {gib(f[4])} | {_reach(t, hb.final[:2])} |")
    return lines


def report(meta: dict, results, big, sizes, var, old, others=None) -> str:
    w = meta["weights"]
    cached = sorted({r["hbal_cached"] for r in results if r["hbal_cached"]})
    lines = [meta["mark"], "", "## Balance: havirt against Ganeti's hbal", "",
             f"Run on {meta['started']:%Y-%m-%d %H:%M} UTC, {machine()}, 1-minute load average "
             f"{meta['load'][0]} at the start and {meta['load'][1]} at the end, by `make bench` "
             f"(`{meta['command']}`), one run each (the 100-node plans: median of 3); {meta['version']}"
             + (f"; hbal's runs read from its cache (`bench/hbal.py`), made on {', '.join(cached)}" if cached else "")
             + ".", "",
             "Generated clusters (`bench/clusters.py`, seed 1), domains crowded on the first nodes; the hard "
             "ones: `tight` (memory and vCPUs 90 % used, up to 8 vCPUs a CPU), `full` (memory 97 % used), "
             "`bigvm` (a few domains of 64 to 128 GiB among small ones), `piled` (domains piled on a few nodes). "
             "Only memory and vCPUs count (hbal: text backend, one node group, `sharedfile` instances "
             "of no disk, so its moves are live migrations to any node; `--ignore-dynu`; `--max-cpu` the "
             "nodes' ratio; see `bench/hbal.py`). "
             f"havirt: `plan_balance` with config.yaml's defaults (`balance.min_gain` {meta['min_gain']}, "
             f"`balance.weights` memory {w.memory:g}, vcpu {w.vcpu:g}, N+1 kept), then with hbal's weights "
             "(memory 1, vcpu 1); where hbal's plan makes the loss of some node fatal, havirt also without "
             "N+1, as hbal plans. Every move of every plan was replayed against havirt's hard limits: none "
             "broke one. hbal's metric is stdev(free memory) + stdev(vCPU ratio); havirt's is "
             f"{w.memory:g} stdev(free memory) + {w.vcpu:g} stdev(vCPU ratio); hbal's printed score matched "
             "ours for the start and both final placements. Time: hbal wall clock; havirt CPU time of the "
             "planning call.", "", *comparison_table(results), "",
             "Targets: reach hbal's final score in no more moves, on havirt's metric with its weights and on "
             "hbal's metric with hbal's weights; not end worse than hbal on both spreads; plan within "
             f"{TIME_LIMIT:g} s at 100 nodes. Judged like for like: with N+1 kept, unless hbal's plan "
             "makes the loss of some node fatal.", "", *verdicts(results), ""]
    if old:
        lines += ["### Before and after", "",
                  f"The planner of revision `{next(iter(old.values())).label.split()[0]}` (with its own "
                  "defaults, N+1 kept) and this one, on the same clusters (CPU time: median of 3 at 100 nodes).",
                  "", *against_table(results, old), ""]
    if others:
        lines += seeds_section(results, others)
    lines += ["### Score after k moves (havirt / hbal metric)", "",
              "What a plan cut short leaves (`--max-moves k`, or a migration that fails at k + 1).", "",
              *prefix_table(results), ""]
    return "\n".join(lines + large_section(big) + sizes_section(sizes, meta["min_gain"])
                     + variants_section(var)) + "\n"


def large_section(big: list[dict]) -> list[str]:
    lines = [f"### havirt alone, larger clusters (target: planning within {TIME_LIMIT:g} s at 100 nodes / "
             "2,000 domains)", "",
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


def sizes_section(sizes: list[dict], min_gain: float) -> list[str]:
    lines = ["### The stop rule at several sizes", "",
             f"One shape (20 domains a node) at 5 to 100 nodes: moves, final score and GiB moved, with the "
             f"per-node rule (`min_gain` {min_gain}: a move must gain {min_gain} / nodes) and with an "
             "absolute rule (a move must gain 0.002, whatever the size).", "",
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
