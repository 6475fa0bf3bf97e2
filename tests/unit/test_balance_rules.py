"""The planner's compiled forms agree with their definitions, on random clusters.

* the fit test of ``balance.model.Layout`` gives exactly the answer of
  ``havirt.rules.fit_problems`` (memory ``allocated + need <= usable``, the
  vCPU cap of ``rules.vcpu_cap``, disks visible: the domain's ``allowed``);
* the incremental score (``balance.score.Sums``) is the score of
  ``score.score_of`` after any move, exchange or placement;
* domains the search treats as alike (one "kind") are alike.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

import pytest
from conftest import first_cluster

from havirt.plan.balance import BDomain, BNode
from havirt.plan.balance.model import Layout
from havirt.plan.balance.score import Sums, score_of
from havirt.rules import fit as rules

sys.path.insert(0, str(Path(__file__).resolve().parent))
from balance_reference import cluster_score, loads, need, random_cluster  # noqa: E402

SEEDS = range(150)


def odd_nodes(rng: random.Random, nodes: list[BNode]) -> list[BNode]:
    """Node limits where rounding bites: ratios like 1.3 or 2.7, ratio 0."""
    return [dataclasses.replace(n, max_ratio=rng.choice([n.max_ratio, 1.3, 2.7, 0.0, 0.5, 1 / 3]))
            for n in nodes]


@pytest.mark.parametrize("seed", SEEDS)
def test_compiled_fit_is_the_rule(seed: int) -> None:
    rng = random.Random(seed)
    nodes, doms = random_cluster(seed, allowed=0.3, maintenance=0.0)
    nodes = odd_nodes(rng, nodes)
    layout = Layout(nodes, doms)
    by_rule = loads(nodes, doms)
    checked = 0
    for k, d in enumerate(layout.doms):
        for j, name in enumerate(layout.names):
            for extra_m, extra_v in ((0, 0), (rng.choice([0, 512, 3000]), rng.choice([0, 1, 3]))):
                compiled = layout.fits(k, j, d.memory_mib, d.vcpus, extra_m, extra_v)
                rule = not rules.fit_problems(by_rule[name], need(d), extra_m, extra_v)
                assert compiled == rule, (d, name, extra_m, extra_v)
                checked += 1
        fitting = layout.fitting(d.memory_mib, d.vcpus, layout.allowed[k], range(layout.n))
        assert fitting == [j for j in range(layout.n) if layout.fits(k, j, d.memory_mib, d.vcpus)]
    assert layout.vcap == [rules.vcpu_cap(n.cpus, n.max_ratio) for n in sorted(nodes, key=lambda n: n.name)]
    assert checked == 2 * len(doms) * len(nodes)


def test_fit_at_the_edges() -> None:
    # exactly full fits; one MiB or one vCPU more does not; ratio 2.7 on 3 CPUs is 8 vCPUs
    nodes = [BNode("a", 4096, 3, 2.7), BNode("b", 4096, 3, 2.7)]
    doms = [BDomain("x", "a", 1024, 1), BDomain("y", "b", 3072, 7)]
    layout = Layout(nodes, doms)
    b = layout.index["b"]
    assert layout.fits(0, b, 1024, 1) and not layout.fits(0, b, 1025, 1) and not layout.fits(0, b, 1024, 2)
    assert rules.vcpu_cap(3, 2.7) == 8


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
