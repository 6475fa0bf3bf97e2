"""What the planners return: moves, plans, and the N+1 verdict, as plain data.

Every field is a str, int, float, bool, or a list/tuple/dict of these
objects, so the caller can render them as text or JSON without asking the
planner anything more.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Move:
    """One domain to another node: a live migration (balance, evacuation) or
    a restart (failover). ``score_after`` is the cluster score once this and
    every earlier move of the plan are done; ``memory_mib`` what it moves."""

    domain: str
    source: str
    target: str
    memory_mib: int
    score_after: float

    def as_dict(self) -> dict:
        """``{"domain", "from", "to", "memory_mib", "score_after"}``."""
        return {"domain": self.domain, "from": self.source, "to": self.target,
                "memory_mib": self.memory_mib, "score_after": self.score_after}


@dataclass(frozen=True)
class Stranded:
    """A domain that cannot be placed anywhere, why (with the numbers), and
    what it would need."""

    domain: str
    reason: str
    memory_mib: int
    vcpus: int

    def as_dict(self) -> dict:
        return {"domain": self.domain, "reason": self.reason, "memory_mib": self.memory_mib, "vcpus": self.vcpus}


@dataclass(frozen=True)
class NodeLoss:
    """What the loss of one node would mean: its running domains restarted
    elsewhere exactly as failover would place them (``restarts``), and those
    that would not fit (``stranded``, with the MiB and vCPUs they need)."""

    node: str
    restarts: tuple[Move, ...]
    stranded: tuple[Stranded, ...]

    @property
    def survives(self) -> bool:
        return not self.stranded

    @property
    def missing_mib(self) -> int:
        return sum(s.memory_mib for s in self.stranded)

    @property
    def missing_vcpus(self) -> int:
        return sum(s.vcpus for s in self.stranded)

    def as_dict(self) -> dict:
        return {"survives_loss": self.survives, "restarts": [m.as_dict() for m in self.restarts],
                "stranded": [s.as_dict() for s in self.stranded],
                "missing_mib": self.missing_mib, "missing_vcpus": self.missing_vcpus}


@dataclass(frozen=True)
class NPlus1:
    """N+1 for the whole cluster: one :class:`NodeLoss` per node, by name."""

    nodes: dict[str, NodeLoss]

    @property
    def ok(self) -> bool:
        """The cluster survives the loss of any one node."""
        return all(loss.survives for loss in self.nodes.values())

    @property
    def failing(self) -> list[str]:
        """Nodes whose loss the cluster would not survive, by name."""
        return [name for name, loss in self.nodes.items() if not loss.survives]

    def as_dict(self) -> dict:
        return {"ok": self.ok, "failing": self.failing,
                "nodes": {name: loss.as_dict() for name, loss in self.nodes.items()}}


@dataclass
class PlacementPlan:
    """Domains placed off one node (evacuation: live migrations; failover:
    restarts), in order, and those that fit nowhere.

    Scores are over the nodes that may receive domains (before and after).
    """

    moves: list[Move]
    stranded: list[Stranded]
    score_before: float = 0.0
    score_after: float = 0.0

    @property
    def blocking(self) -> list[tuple[str, str]]:
        """``(domain, reason)`` for each domain that stays."""
        return [(s.domain, s.reason) for s in self.stranded]

    @property
    def memory_mib(self) -> int:
        """Memory the moves carry, in total."""
        return sum(m.memory_mib for m in self.moves)

    def as_dict(self) -> dict:
        return {"moves": [m.as_dict() for m in self.moves], "stranded": [s.as_dict() for s in self.stranded],
                "score_before": self.score_before, "score_after": self.score_after,
                "memory_mib": self.memory_mib}


@dataclass
class BalancePlan:
    """Ordered migrations for ``cluster balance``.

    Every prefix of ``moves`` is a plan of its own: stopping after any move
    (``--max-moves``, a failed migration) leaves the cluster as balanced as
    the planner could make it with that many moves, and no domain moves
    twice. ``n_plus_1_*`` are ``None`` when N+1 was not asked for.
    """

    moves: list[Move]
    score_before: float
    score_after: float
    n_plus_1_before: NPlus1 | None = None
    n_plus_1_after: NPlus1 | None = None

    @property
    def memory_mib(self) -> int:
        """Memory the migrations copy, in total."""
        return sum(m.memory_mib for m in self.moves)

    def as_dict(self) -> dict:
        """The plan as JSON-ready data (keys in this order, a stable format)."""
        return {"moves": [m.as_dict() for m in self.moves], "score_before": self.score_before,
                "score_after": self.score_after, "memory_mib": self.memory_mib,
                "n_plus_1_before": None if self.n_plus_1_before is None else self.n_plus_1_before.as_dict(),
                "n_plus_1_after": None if self.n_plus_1_after is None else self.n_plus_1_after.as_dict()}
