"""A fresh picture of the cluster: what every scanned node said, moments ago."""

from __future__ import annotations

from dataclasses import dataclass, field

from havirt.parse.virsh import DomainFact, NodeFacts


@dataclass
class Cluster:
    nodes: dict[str, NodeFacts] = field(default_factory=dict)

    def answered(self) -> list[str]:
        return [n for n, f in sorted(self.nodes.items()) if f.reachable]

    def unreachable(self) -> list[NodeFacts]:
        return [f for _, f in sorted(self.nodes.items()) if not f.reachable]

    def copies(self, domain: str) -> list[tuple[str, DomainFact]]:
        """Every node where `domain` is present (running, paused, incoming...)."""
        return [(n, d) for n, f in sorted(self.nodes.items()) if f.reachable
                for d in f.named(domain) if d.active]

    def present(self) -> dict[str, list[tuple[str, DomainFact]]]:
        """Every domain present on a node that answered -> its copies, by node name."""
        out: dict[str, list[tuple[str, DomainFact]]] = {}
        for n in self.answered():
            for d in self.nodes[n].every_domain():
                if d.active:
                    out.setdefault(d.name, []).append((n, d))
        return out

    def placements(self) -> dict[str, tuple[str, DomainFact]]:
        """Every present domain -> the copy that runs its guest: during a live
        migration the source, not the target's paused standby copy."""
        return {name: ([c for c in copies if not c[1].standby] or copies)[0]
                for name, copies in self.present().items()}

    def duplicates(self) -> dict[str, list[str]]:
        """Domains whose guest runs on two or more nodes -> every node with a copy.

        A live migration shows a domain on two nodes for a while, the guest
        on one and a paused copy (standby) on the other: not a double run.
        """
        return {d: [n for n, _ in copies] for d, copies in sorted(self.present().items())
                if sum(not fact.standby for _, fact in copies) > 1}


@dataclass
class Finding:
    severity: str          # critical, error, warning
    kind: str              # a short stable key, e.g. duplicate, unreachable
    subject: str           # the node or domain concerned
    message: str
    fix: str = ""
