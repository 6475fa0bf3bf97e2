"""Generated clusters for the balance benchmarks and tests: deterministic by
seed (and by name: the name seeds the draw too).

Domains are placed with a bias toward the first nodes (an unbalanced
cluster, as after a failover or years of hand placement), always within the
hard limits. ``30n-400d-tight`` and ``40n-600d-tight-hetero`` are filled to
about 90 % of their memory; ``hetero`` ones mix node sizes four to one;
``skewed`` ones crowd the first nodes (domains placed as they come, not
largest first), and some of their domains see their disks on only a few
nodes (3 to 20) each. The hard shapes, at several sizes:

* ``tight``: little free memory and high vCPU ratios: memory and vCPUs both
  about 90 % used, at up to 8 vCPUs a CPU;
* ``full``: memory about 97 % used, vCPUs 90 % at up to 4 a CPU;
* ``bigvm``: mostly small domains, and a few big ones (64 to 128 GiB, 16
  to 32 vCPUs), on nodes of 128 to 384 GiB;
* ``piled``: domains piled on a few first nodes.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from havirt.plan.balance import BDomain, BNode  # noqa: E402
from havirt.rules.fit import vcpu_cap  # noqa: E402

# (usable MiB, CPUs)
SMALL = [(128 * 1024, 32), (192 * 1024, 48)]
MIXED = [(128 * 1024, 32), (192 * 1024, 48), (256 * 1024, 64), (384 * 1024, 96)]
HETERO = [(96 * 1024, 16), (384 * 1024, 96)]
# (MiB, vCPUs) choices for domains
FLEET = [(1024, 1), (2048, 2), (2048, 1), (4096, 2), (4096, 4), (8192, 4), (8192, 8), (16384, 8)]
BIG = [(8192, 2), (16384, 4), (24576, 8), (32768, 8), (49152, 16)]
# The fleet, and a few big domains (one draw in 17).
BIGVM = FLEET * 6 + [(65536, 16), (98304, 24), (131072, 32)]
# Memory and vCPUs drawn each on its own (the skewed clusters).
SKEWED = [(m, v) for m in (1024, 2048, 2048, 4096, 4096, 8192, 16384) for v in (1, 2, 2, 4, 8)]


@dataclass(frozen=True)
class Shape:
    """How to generate one cluster."""

    name: str
    nodes: int
    domains: int
    node_kinds: tuple = tuple(MIXED)
    domain_kinds: tuple = tuple(FLEET)
    fill: float = 0.0  # > 0: grow or shrink domains so memory use is about this share
    vcpu_fill: float = 0.0  # > 0: scale vCPUs so their sum is about this share of every node's cap
    skew: float = 3.0  # higher: domains crowd the first nodes more
    allowed_share: float = 0.0  # share of domains on storage only some nodes see (one of 3 pools)
    allowed_nodes: tuple[int, int] | None = None  # (a, b): each of those sees a nodes to b, drawn for it
    fixed_share: float = 0.0  # share of domains that may not move
    max_ratio: float = 4.0
    largest_first: bool = True  # False: domains placed in the order drawn


def generate(shape: Shape, seed: int) -> tuple[list[BNode], list[BDomain]]:
    """The nodes and domains of ``shape``, deterministic for ``seed``."""
    rng = random.Random(f"{shape.name}/{seed}")
    nodes = []
    for k in range(shape.nodes):
        mem, cpus = rng.choice(shape.node_kinds)
        nodes.append(BNode(f"node{k:03d}", mem, cpus, shape.max_ratio))
    sizes = [rng.choice(shape.domain_kinds) for _ in range(shape.domains)]
    if shape.fill > 0:
        scale = shape.fill * sum(n.usable_mib for n in nodes) / sum(m for m, _ in sizes)
        sizes = [(max(256, int(m * scale) // 256 * 256), v) for m, v in sizes]
    if shape.vcpu_fill > 0:
        cap = sum(vcpu_cap(n.cpus, n.max_ratio) for n in nodes)
        scale = shape.vcpu_fill * cap / sum(v for _, v in sizes)
        sizes = [(m, max(1, round(v * scale))) for m, v in sizes]
    return nodes, _place(shape, nodes, sizes, rng)


def _place(shape: Shape, nodes: list[BNode], sizes: list[tuple[int, int]], rng: random.Random) -> list[BDomain]:
    names = [n.name for n in nodes]
    pools = [frozenset(rng.sample(names, max(2, int(len(names) * rng.uniform(0.4, 0.8)))))
             for _ in range(3 if shape.allowed_share else 0)]
    used = [0] * len(nodes)
    vused = [0] * len(nodes)
    doms = []
    n = len(nodes)
    for k, (mem, vcpus) in enumerate(sorted(sizes, reverse=True) if shape.largest_first else sizes):
        allowed = None
        if rng.random() < shape.allowed_share:
            if shape.allowed_nodes is None:
                allowed = rng.choice(pools)
            else:
                a, b = (min(x, n) for x in shape.allowed_nodes)
                allowed = frozenset(rng.sample(names, rng.randint(a, b)))
        pool = [j for j in range(n) if allowed is None or names[j] in allowed]
        room = [j for j in pool if used[j] + mem <= nodes[j].usable_mib
                and vused[j] + vcpus <= nodes[j].cpus * shape.max_ratio]
        if not room:
            continue
        for _ in range(50):
            j = min(int(rng.expovariate(shape.skew / n)), n - 1)
            if j in room:
                break
        else:
            j = room[0]
        used[j] += mem
        vused[j] += vcpus
        doms.append(BDomain(f"vm{k:04d}", names[j], mem, vcpus,
                            movable=rng.random() >= shape.fixed_share, allowed=allowed))
    return doms


TIGHT = {"fill": 0.9, "vcpu_fill": 0.9, "max_ratio": 8.0}
FULL = {"fill": 0.97, "vcpu_fill": 0.9}

# The clusters of the hbal comparison (memory and vCPUs only: every domain
# movable, disks everywhere).
COMPARISON = [
    Shape("5n-40d", 5, 40, tuple(SMALL)),
    Shape("8n-big", 8, 48, tuple(MIXED), tuple(BIG), skew=2.0),
    Shape("10n-120d", 10, 120),
    Shape("20n-300d-hetero", 20, 300, tuple(HETERO)),
    Shape("30n-400d-tight", 30, 400, fill=0.9),
    Shape("40n-600d", 40, 600),
    Shape("40n-600d-tight-hetero", 40, 600, tuple(HETERO), fill=0.88),
    Shape("10n-150d-tight", 10, 150, **TIGHT),
    Shape("30n-500d-tight", 30, 500, **TIGHT),
    Shape("100n-2000d-tight", 100, 2000, **TIGHT),
    Shape("10n-150d-full", 10, 150, **FULL),
    Shape("30n-500d-full", 30, 500, **FULL),
    Shape("100n-2000d-full", 100, 2000, **FULL),
    Shape("8n-60d-bigvm", 8, 60, tuple(MIXED), tuple(BIGVM), skew=2.0),
    Shape("20n-200d-bigvm", 20, 200, tuple(MIXED), tuple(BIGVM), skew=2.0),
    Shape("100n-1500d-bigvm", 100, 1500, tuple(MIXED), tuple(BIGVM), skew=2.0),
    Shape("60n-1000d-piled", 60, 1000, skew=12.0),
]
# Larger, havirt alone (hbal needs many minutes there, and cannot say where
# disks are seen nor that a domain may not move).
LARGE = [
    Shape("60n-1000d", 60, 1000),
    Shape("100n-2000d", 100, 2000),
    Shape("100n-2000d-mixed", 100, 2000, allowed_share=0.15, fixed_share=0.02),
    Shape("100n-2000d-skewed", 100, 2000, domain_kinds=tuple(SKEWED), allowed_share=0.15,
          allowed_nodes=(3, 20), fixed_share=0.02, largest_first=False),
]
