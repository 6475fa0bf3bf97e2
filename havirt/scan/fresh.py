"""The fresh scan: one session per node, a second read of suspect nodes, the
identity check, and the fold of what the nodes said into the state."""

from __future__ import annotations

from typing import NamedTuple

from havirt.errors import NodeUnreachable, ParseError
from havirt.parse.virsh import NodeFacts, parse_scan
from havirt.remote.commands import scan_script
from havirt.scan.cluster import Cluster, Finding
from havirt.store.state import State


class Scan(NamedTuple):
    cluster: Cluster
    findings: list[Finding]


def read_nodes(runner, cfg, names, paths=(), dump_running=False) -> Cluster:
    """ONE session per node, all in parallel; unreachable nodes are facts too."""
    results = runner.run_many({n: scan_script(cfg, paths, dump_running, node=n) for n in names})
    cluster = Cluster()
    for name in names:
        res = results[name]
        if isinstance(res, NodeUnreachable):
            cluster.nodes[name] = NodeFacts(name=name, reachable=False, error=res.reason)
            continue
        try:
            facts = parse_scan(name, res.stdout, res.stderr, res.exit_code)
        except ParseError as e:
            facts = NodeFacts(name=name, reachable=False, error=f"unexpected output: {e}")
        facts.duration, facts.alive = res.duration, True
        cluster.nodes[name] = facts
    return cluster


def fresh_scan(runner, cfg, state: State, names, paths=(), dump_running=False) -> Cluster:
    """Read `names`, read again the nodes of a seeming double run, check identities."""
    cluster = read_nodes(runner, cfg, names, paths, dump_running)
    # The nodes were read at slightly different moments: at the very end of a
    # live migration one read can catch the source still running and the other
    # the target already running; and a node can list the lockspace before
    # another wrote its marker there for the first time. Ask those nodes once
    # more before calling it a double run or a lockspace apart.
    suspects = {n for ns in cluster.duplicates().values() for n in ns}
    suspects |= _marks_missed(cluster, state)
    if suspects:
        cluster.nodes.update(read_nodes(runner, cfg, sorted(suspects), paths, dump_running).nodes)
    check_identity(cluster, state)
    return cluster


def check_identity(cluster: Cluster, state: State) -> None:
    """A node must still be the host it was: an address that now reaches
    another machine would hide the real node's domains. A node that answers
    with another hostname than recorded, or the same hostname as another
    node, is treated as unknown (like a node that did not answer)."""
    seen: dict[str, list[str]] = {}
    for name, facts in sorted(cluster.nodes.items()):
        if not facts.reachable or not facts.hostname:
            continue
        recorded = state.nodes[name].hostname
        if recorded and facts.hostname != recorded:
            facts.reachable = facts.alive = False      # another machine answered, not this node
            facts.error = (f"answers as host {facts.hostname!r}, recorded as {recorded!r}: check "
                           f"its address (havirt node set {name} --address ...)")
            continue
        seen.setdefault(facts.hostname, []).append(name)
    for host, names in seen.items():
        if len(names) > 1:
            for name in names:
                facts = cluster.nodes[name]
                facts.reachable = facts.alive = False
                facts.error = (f"nodes {', '.join(names)} all answer as host {host!r}: "
                               "check their addresses")


def _marks_missed(cluster: Cluster, state: State) -> set[str]:
    """Nodes with leases whose listing of the lockspace lacks the marker of
    another node with leases in the same folder."""
    leased = {n: cluster.nodes[n] for n in cluster.answered() if cluster.nodes[n].leases}
    return {n for n, f in leased.items()
            if any(m != n and g.lockspace == f.lockspace and m not in f.lease_marks
                   for m, g in leased.items())}
