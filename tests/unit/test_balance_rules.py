"""The planner's fast forms agree with their definitions, on random clusters.

* the copies of ``Layout.fits`` inlined in hot loops (``Layout.fitting``)
  answer what it answers (that ``Layout.fits`` is ``havirt.rules``'s rule is
  checked through the production adapter, in test_planner_input.py);
* the incremental score (``balance.score.Sums``) is the score of
  ``score.score_of`` after any move, exchange or placement;
* domains the search treats as alike (one "kind") are alike;
* the searches (``search.scan_best``, ``swaps.scan_swaps``) find what trying
  every move and every exchange finds, and the bounds they prune with bound.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
from pathlib import Path

import pytest
from conftest import first_cluster

from havirt.plan.balance import BDomain, BNode
from havirt.plan.balance.model import Layout
from havirt.plan.balance.score import Sums, Weights, score_of
from havirt.plan.balance.search import _Base, _Order, _source_terms, _Targets, scan_best
from havirt.plan.balance.swaps import _kinds, _pair_terms, _pairs, _span, scan_swaps
from havirt.rules import fit as rules

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from balance_reference import cluster_score, exchanges_plain, moves_plain, random_cluster  # noqa: E402
from clusters import Shape, generate  # noqa: E402

WEIGHTS = [Weights(), Weights(1, 1), Weights(0.3, 2.0), Weights(1, 0), Weights(0, 1)]

SEEDS = range(150)


def odd_nodes(rng: random.Random, nodes: list[BNode]) -> list[BNode]:
    """Node limits where rounding bites: ratios like 1.3 or 2.7, ratio 0."""
    return [dataclasses.replace(n, max_ratio=rng.choice([n.max_ratio, 1.3, 2.7, 0.0, 0.5, 1 / 3]))
            for n in nodes]


@pytest.mark.parametrize("seed", SEEDS)
def test_the_inlined_fit_is_the_fit(seed: int) -> None:
    rng = random.Random(seed)
    nodes, doms = random_cluster(seed, allowed=0.3, maintenance=0.1)
    nodes = odd_nodes(rng, nodes)
    layout = Layout(nodes, doms)
    for k, d in enumerate(layout.doms):
        sizes = [d.size(False), d.size(True), (rng.choice([0, 512, 9000]), rng.choice([0, 1, 3, 40]))]
        for m, v in sizes:
            for allowed in (layout.allowed[k], None, frozenset(rng.sample(range(layout.n), layout.n // 2))):
                fitting = layout.fitting(m, v, allowed, range(layout.n))
                assert fitting == [j for j in range(layout.n) if layout.fits(j, m, v, allowed)]
                targets = rng.sample(range(layout.n), layout.n // 2)
                assert layout.fitting(m, v, allowed, targets) == [j for j in targets if layout.fits(j, m, v, allowed)]
    active = sorted((n for n in nodes if not n.maintenance), key=lambda n: n.name)
    assert layout.vcap == [rules.vcpu_cap(n.cpus, n.max_ratio) for n in active]


def test_fit_and_rank_at_the_edges() -> None:
    # exactly full fits; one MiB or one vCPU more does not; ratio 2.7 on 3 CPUs is 8 vCPUs
    nodes = [BNode("a", 4096, 3, 2.7), BNode("b", 4096, 3, 2.7)]
    doms = [BDomain("x", "a", 1024, 1), BDomain("y", "b", 3072, 7)]
    layout = Layout(nodes, doms)
    b = layout.index["b"]
    assert layout.fits(b, 1024, 1, None) and not layout.fits(b, 1025, 1, None) and not layout.fits(b, 1024, 2, None)
    assert not layout.fits(b, 1024, 1, frozenset({0})) and layout.fits(b, 1024, 1, frozenset({b}))
    assert layout.fits(b, 0, 0, None, extra_m=1024, extra_v=1) and not layout.fits(b, 0, 0, None, extra_m=1025)
    assert rules.vcpu_cap(3, 2.7) == 8
    assert layout.rank(b, 1024, 1) == (0.0, -8 / 3, -b)
    assert layout.rank(0, 1024, 1, extra_m=1024) == (0.25, -2 / 3, 0)
    assert layout.headroom(b) == (1024, 1)


@pytest.mark.parametrize("seed", range(60))
def test_incremental_score_is_the_score(seed: int) -> None:
    rng = random.Random(seed)
    nodes, doms = first_cluster(lambda nodes, doms: len(nodes) >= 2 and doms, seed, fixed=0.0)
    layout = Layout(nodes, doms)
    sums = layout.sums
    assert sums.cur == pytest.approx(cluster_score(nodes, doms), abs=1e-12)
    for _ in range(20):
        k = rng.randrange(len(layout.doms))
        i = layout.where[k]
        j = rng.choice([x for x in range(layout.n) if x != i])
        m, v = layout.dmem[k], layout.dvcpu[k]
        mem, vcpu = list(layout.mem), list(layout.vcpu)
        mem[i] -= m
        vcpu[i] -= v
        mem[j] += m
        vcpu[j] += v
        exact = score_of(layout.usable, layout.cpus, mem, vcpu)
        assert sums.after_move(i, j, m, v) == pytest.approx(exact, abs=1e-12)
        targets = [x for x in range(layout.n) if x != i]
        gains = dict(zip(targets, sums.move_gains(i, m, v, targets)))
        assert sums.cur - gains[j] == pytest.approx(exact, abs=1e-12)
        dm, dv = rng.randint(-4096, 4096), rng.randint(-4, 4)
        mem2, vcpu2 = list(layout.mem), list(layout.vcpu)
        mem2[i] += dm
        vcpu2[i] += dv
        mem2[j] -= dm
        vcpu2[j] -= dv
        assert sums.after_exchange(i, j, dm, dv) == pytest.approx(
            score_of(layout.usable, layout.cpus, mem2, vcpu2), abs=1e-12)
        layout.apply(k, j)
        assert sums.cur == pytest.approx(score_of(layout.usable, layout.cpus, layout.mem, layout.vcpu), abs=1e-12)


def test_sums_adjusted_in_place_stay_exact_over_a_placement() -> None:
    usable, cpus = [8192, 16384, 32768, 4096], [2, 4, 8, 2]
    mem, vcpu = [1000, 2000, 3000, 4000], [1, 2, 3, 4]
    sums = Sums(usable, cpus, mem, vcpu)
    copy = sums.copy()
    rng = random.Random(1)
    for _ in range(200):
        j = rng.randrange(4)
        mem[j] += rng.randint(0, 100)
        vcpu[j] += rng.randint(0, 1)
        copy.update(j, mem[j], vcpu[j], exact=False)
        assert copy.cur == pytest.approx(score_of(usable, cpus, mem, vcpu), abs=1e-9)
    assert sums.cur == pytest.approx(score_of(usable, cpus, [1000, 2000, 3000, 4000], [1, 2, 3, 4]))


@pytest.mark.parametrize("seed", range(30))
def test_domains_of_one_kind_are_alike(seed: int) -> None:
    nodes, doms = first_cluster(lambda nodes, doms: doms, seed, allowed=0.3, restart=0.3)
    layout = Layout(nodes, doms)
    seen = 0
    for i in range(layout.n):
        kinds = layout.groups(i)
        reps = {k for *_, k in kinds}
        for k in layout.members[i]:
            seen += 1
            d = layout.doms[k]
            if not d.movable:
                assert k not in reps
                continue
            rep = next(r for r in reps if (layout.dmem[r], layout.dvcpu[r], layout.allowed[r])
                       == (d.memory_mib, d.vcpus, layout.allowed[k]) and layout.doms[r].size(True) == d.size(True))
            assert rep <= k  # the first by name stands for its kind
    assert seen == len(doms)


def _stepped(seed: int, **kw) -> list[Layout]:
    """A random cluster (with a weight of the score drawn too), and the same
    after one and two random moves (so some domains have moved)."""
    rng = random.Random(seed)
    nodes, doms = first_cluster(lambda nodes, doms: len(nodes) >= 2 and doms, seed, **kw)
    layout = Layout(nodes, doms, WEIGHTS[seed % len(WEIGHTS)])
    out = []
    for _ in range(3):
        out.append(layout)
        movable = [k for i in range(layout.n) for *_, k in layout.groups(i)]
        if not movable:
            break
        k = rng.choice(movable)
        fit = [j for j in layout.fitting(layout.dmem[k], layout.dvcpu[k], layout.allowed[k], range(layout.n))
               if j != layout.where[k]]
        if fit:
            layout.apply(k, rng.choice(fit))
    return out


@pytest.mark.parametrize("seed", range(60))
def test_the_best_moves_are_those_of_every_pair(seed: int) -> None:
    for layout in _stepped(seed, allowed=0.3, maintenance=0.1):
        for floor in (-1.0, 0.0, 1e-12, 0.002):
            every = moves_plain(layout, floor)
            for keep in (1, 4, 1000):
                got = scan_best(layout, floor, keep)
                assert [(k, j) for _, k, j in got] == [(k, j) for _, _, k, j in every[:keep]]
                assert [g for g, _, _ in got] == pytest.approx([g for g, *_ in every[:keep]], abs=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_the_best_moves_on_nodes_of_few_kinds(seed: int) -> None:
    """Where nodes are of few kinds (taken kind by kind), on tight clusters
    too: the same answers, and each kind's order gives the least parts."""
    shape = Shape(f"kinds{seed}", 12, 90, fill=(0.0, 0.9)[seed % 2], vcpu_fill=(0.0, 0.9, 0.95)[seed % 3],
                  max_ratio=(4.0, 8.0)[seed % 2])
    nodes, doms = generate(shape, seed)
    layout = Layout(nodes, doms, WEIGHTS[seed % len(WEIGHTS)])
    order = _Order.of(layout)
    assert order is not None
    base = _Base(layout.sums)
    for m, v in {(layout.dmem[k], layout.dvcpu[k]) for k in range(len(layout.doms))} | {(1 << 40, 1), (1, 1 << 20)}:
        fast, every = _Targets(layout, base, order, m, v), _Targets(layout, base, None, m, v)
        assert (fast.low_f, fast.low_r) == (every.low_f, every.low_r)
    for floor in (1e-12, 0.002):
        every = moves_plain(layout, floor)
        got = scan_best(layout, floor, 6)
        assert [(k, j) for _, k, j in got] == [(k, j) for _, _, k, j in every[:6]]


@pytest.mark.parametrize("seed", range(40))
def test_the_best_swaps_are_those_of_every_exchange(seed: int) -> None:
    for layout in _stepped(seed, allowed=0.3, fixed=0.0):
        for floor in (1e-12, 0.002):
            every = exchanges_plain(layout, floor)
            got = scan_swaps(layout, floor, 5)
            assert [g for g, *_ in got] == pytest.approx([g for g, *_ in every[:5]], abs=1e-12)
            for gain, first, to_first, second, to_second in got:
                assert {first, second} in [{a, b} for g, a, b in every if abs(g - gain) < 1e-12]
                assert (to_first, to_second) == (layout.where[second], layout.where[first])


@pytest.mark.parametrize("seed", range(30))
def test_the_inlined_pair_bound_is_the_bound(seed: int) -> None:
    """``swaps._pairs`` bounds each pair of nodes as ``_pair_terms`` over the
    range of what the pair's domains and room allow, then ``gain_at_most``."""
    for layout in _stepped(seed, allowed=0.3, fixed=0.1):
        base = _Base(layout.sums)
        want = {}
        kinds = [_kinds(layout, i) for i in range(layout.n)]
        spans = [_span(k) for k in kinds]
        for i in range(layout.n):
            for j in range(i + 1, layout.n):
                si, sj = spans[i], spans[j]
                if si is None or sj is None:
                    continue
                dm = (max(sj[0] - si[1], -sj[4]), min(sj[1] - si[0], si[4]))
                dv = (max(sj[2] - si[3], -sj[5]), min(sj[3] - si[2], si[5]))
                if dm[0] <= dm[1] and dv[0] <= dv[1]:
                    want[(i, j)] = base.gain_at_most(*_pair_terms(base, i, j, dm, dv))
        got = {(i, j): -neg for neg, i, j in _pairs(layout, base, -math.inf, kinds)}
        assert got.keys() == want.keys()
        for key, ub in want.items():
            assert got[key] == pytest.approx(ub, abs=1e-12)
        ubs = sorted(want.values())
        floor = (ubs[len(ubs) // 2 - 1] + ubs[len(ubs) // 2]) / 2 if len(ubs) >= 2 else 0.0  # between two
        assert sorted((i, j) for _, i, j in _pairs(layout, base, floor, kinds)) == sorted(
            key for key, ub in want.items() if ub >= floor)


@pytest.mark.parametrize("seed", range(60))
def test_the_bounds_bound(seed: int) -> None:
    """What a move changes of ``n`` times each variance is at least its
    source's part plus its target's; an exchange's, at least the least of the
    quadratic over the range it lies in."""
    rng = random.Random(seed)
    for layout in _stepped(seed, fixed=0.0):
        base = _Base(layout.sums)
        n, inv = layout.n, 1.0 / layout.n

        def n_var() -> tuple[float, float]:
            free = [(u - m) / u for u, m in zip(layout.usable, layout.mem)]
            ratio = [v / c for c, v in zip(layout.cpus, layout.vcpu)]
            return (n * (math.fsum(x * x for x in free) * inv - (math.fsum(free) * inv) ** 2),
                    n * (math.fsum(x * x for x in ratio) * inv - (math.fsum(ratio) * inv) ** 2))

        f0, r0 = n_var()
        for _ in range(20):
            k = rng.randrange(len(layout.doms))
            i = layout.where[k]
            if i < 0:
                continue
            j = rng.choice([x for x in range(n) if x != i])
            m, v = layout.dmem[k], layout.dvcpu[k]
            sf, sr = _source_terms(base, i, m, v)
            low = _Targets(layout, base, None, m, v)
            with layout.trial(k, j):
                f1, r1 = n_var()
            if layout.fits(j, m, v, None):
                assert f1 - f0 >= sf + low.low_f - 1e-9 and r1 - r0 >= sr + low.low_r - 1e-9
                assert any(f1 - f0 >= sf + tf - 1e-9 and r1 - r0 >= sr + tr - 1e-9 for tf, tr in low.frontier())
            # the same move as an exchange of (-m, -v) between i and j
            lf, lr = _pair_terms(base, i, j, (-m, -m), (-v, -v))
            assert abs((f1 - f0) - lf) < 1e-9 and abs((r1 - r0) - lr) < 1e-9
            wide_f, wide_r = _pair_terms(base, i, j, (-m - 100, 50), (-v - 3, 2))
            assert f1 - f0 >= wide_f - 1e-9 and r1 - r0 >= wide_r - 1e-9
