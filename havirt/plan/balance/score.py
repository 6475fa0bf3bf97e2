"""The imbalance score: declared once here, with its incremental form.

Over the nodes that take part (up, not in maintenance)::

    free(n)  = (usable_mib - allocated_mib) / usable_mib   # may be < 0
    ratio(n) = allocated_vcpus / cpus
    score    = memory * pstdev(free) + vcpu * pstdev(ratio)

with the :class:`Weights` ``memory`` 1 and ``vcpu`` 0.5 unless the admin
chose others (``balance.weights``). Lower is better balanced; 0 means every
node has the same share of its memory free and the same vCPU ratio. :func:`score_of` computes it the plain
way (two passes, ``fsum``); :class:`Sums` keeps sums and sums of squares so
that the score after a candidate move costs O(1), which the search needs. A
unit test checks the two agree on random moves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Weights:
    """How much each term counts in the score: the spread of free memory
    shares, and that of vCPU ratios. Neither negative, not both 0."""

    memory: float = 1.0
    vcpu: float = 0.5

    def __post_init__(self) -> None:
        for name in ("memory", "vcpu"):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not (0.0 <= x < math.inf):
                raise ValueError(f"weight {name} must be a number >= 0, got {x!r}")
        if self.memory == 0 and self.vcpu == 0:
            raise ValueError("the weights of memory and vcpu cannot both be 0")


DEFAULT_WEIGHTS = Weights()


def pstdev(values: Sequence[float]) -> float:
    """Population standard deviation, two-pass and ``fsum``-accurate."""
    n = len(values)
    if n == 0:
        return 0.0
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((x - mean) * (x - mean) for x in values) / n)


def terms_of(usable: Sequence[int], cpus: Sequence[int], mem: Sequence[int], vcpu: Sequence[int]) -> tuple[float, float]:
    """The two spreads, unweighted: pstdev of free memory shares, of vCPU ratios."""
    free = [(u - m) / u for u, m in zip(usable, mem)]
    ratio = [v / c for c, v in zip(cpus, vcpu)]
    return pstdev(free), pstdev(ratio)


def score_of(usable: Sequence[int], cpus: Sequence[int], mem: Sequence[int], vcpu: Sequence[int],
             weights: Weights = DEFAULT_WEIGHTS) -> float:
    """The score from per-node capacities and allocations (the definition)."""
    f, r = terms_of(usable, cpus, mem, vcpu)
    return weights.memory * f + weights.vcpu * r


class Sums:
    """The score kept as sums, for O(1) evaluation of what a move would do.

    ``f``/``r`` are each node's free fraction and vCPU ratio, less the mean
    they had when the sums were made (``f0``/``r0``): the variance is the
    same, and sums of values near 0 keep it exact to rounding even when it
    is nearly 0. ``cur`` is the current score in this form (equal to
    :func:`score_of` up to rounding).
    """

    def __init__(
        self, usable: Sequence[int], cpus: Sequence[int], mem: Sequence[int], vcpu: Sequence[int], skip: int = -1,
        weights: Weights = DEFAULT_WEIGHTS,
    ) -> None:
        """``skip``: a node left out (its entries stay, read 0, and must not be updated)."""
        self.wm, self.wv = float(weights.memory), float(weights.vcpu)
        self.n = len(usable) - (skip >= 0)
        self.usable = list(usable)
        self.cpus = list(cpus)
        self.inv_u = [1.0 / u for u in usable]
        self.inv_c = [1.0 / c for c in cpus]
        free = [(u - m) / u for u, m in zip(usable, mem)]
        ratio = [v / c for c, v in zip(cpus, vcpu)]
        if skip >= 0:
            del free[skip], ratio[skip]
        self.f0 = math.fsum(free) / self.n if self.n else 0.0
        self.r0 = math.fsum(ratio) / self.n if self.n else 0.0
        self.f = [x - self.f0 for x in free]
        self.r = [x - self.r0 for x in ratio]
        if skip >= 0:
            self.f.insert(skip, 0.0)
            self.r.insert(skip, 0.0)
        self.sf = self.qf = self.sr = self.qr = self.cur = 0.0
        self._resum()

    def _resum(self) -> None:
        self.sf = math.fsum(self.f)
        self.qf = math.fsum(x * x for x in self.f)
        self.sr = math.fsum(self.r)
        self.qr = math.fsum(x * x for x in self.r)
        self.cur = self.combine(self.qf, self.sf, self.qr, self.sr)

    def copy(self) -> Sums:
        """A copy to change apart."""
        out = Sums.__new__(Sums)
        out.__dict__.update(self.__dict__)
        out.f, out.r = list(self.f), list(self.r)
        return out

    def update(self, i: int, mem_i: int, vcpu_i: int, exact: bool = True) -> None:
        """Node ``i`` now holds ``mem_i`` MiB and ``vcpu_i`` vCPUs. ``exact``:
        sum again (``fsum``) rather than adjust the sums (O(1), for short
        sequences where rounding cannot build up)."""
        fi = (self.usable[i] - mem_i) / self.usable[i] - self.f0
        ri = vcpu_i / self.cpus[i] - self.r0
        if exact:
            self.f[i], self.r[i] = fi, ri
            self._resum()
            return
        f0, r0 = self.f[i], self.r[i]
        self.f[i], self.r[i] = fi, ri
        self.sf += fi - f0
        self.qf += fi * fi - f0 * f0
        self.sr += ri - r0
        self.qr += ri * ri - r0 * r0
        self.cur = self.combine(self.qf, self.sf, self.qr, self.sr)

    def combine(self, qf: float, sf: float, qr: float, sr: float) -> float:
        """The score from sums and sums of squares."""
        if self.n == 0:
            return 0.0
        inv = 1.0 / self.n
        vf = qf * inv - (sf * inv) ** 2
        vr = qr * inv - (sr * inv) ** 2
        return self.wm * (math.sqrt(vf) if vf > 0.0 else 0.0) + self.wv * (math.sqrt(vr) if vr > 0.0 else 0.0)

    def after_move(self, i: int, j: int, m: int, v: int) -> float:
        """The score once ``m`` MiB and ``v`` vCPUs went from node ``i`` to ``j``."""
        return self.after_exchange(i, j, -m, -v)

    def after_exchange(self, i: int, j: int, dm: int, dv: int) -> float:
        """The score once node ``i`` gained ``dm`` MiB and ``dv`` vCPUs that ``j`` lost."""
        f, r = self.f, self.r
        nfi = f[i] - dm * self.inv_u[i]
        nfj = f[j] + dm * self.inv_u[j]
        nri = r[i] + dv * self.inv_c[i]
        nrj = r[j] - dv * self.inv_c[j]
        return self.combine(
            self.qf - f[i] ** 2 - f[j] ** 2 + nfi * nfi + nfj * nfj,
            self.sf - f[i] - f[j] + nfi + nfj,
            self.qr - r[i] ** 2 - r[j] ** 2 + nri * nri + nrj * nrj,
            self.sr - r[i] - r[j] + nri + nrj,
        )

    def move_gains(self, i: int, m: int, v: int, targets: Sequence[int]) -> list[float]:
        """``cur - after_move(i, j, m, v)`` for every ``j`` in ``targets`` (none is ``i``).

        The same arithmetic as :meth:`after_exchange`, with what depends only
        on the source hoisted out of the loop over targets.
        """
        f, r, inv_u, inv_c = self.f, self.r, self.inv_u, self.inv_c
        inv = 1.0 / self.n
        sqrt = math.sqrt
        a = m * inv_u[i]
        c = v * inv_c[i]
        nfi = f[i] + a
        nri = r[i] - c
        sf1 = self.sf + a
        qf1 = self.qf - f[i] * f[i] + nfi * nfi
        sr1 = self.sr - c
        qr1 = self.qr - r[i] * r[i] + nri * nri
        cur, wm, w = self.cur, self.wm, self.wv
        out: list[float] = []
        add = out.append
        for j in targets:
            du = m * inv_u[j]  # what j's free share loses
            dc = v * inv_c[j]  # what j's ratio gains
            mf = (sf1 - du) * inv
            mr = (sr1 + dc) * inv
            vf = (qf1 + du * (du - 2.0 * f[j])) * inv - mf * mf
            vr = (qr1 + dc * (dc + 2.0 * r[j])) * inv - mr * mr
            add(cur - wm * (sqrt(vf) if vf > 0.0 else 0.0) - w * (sqrt(vr) if vr > 0.0 else 0.0))
        return out
