"""The disk images in the pools, as qemu-img on a node that sees them says now.

Which node reads (and later writes) a pool is chosen from a fresh scan that
checked the pool folders on every node: of the nodes that answered and see
the folder, the one that sees the most of the folders asked, then by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from havirt.errors import NodeUnreachable, RemoteError
from havirt.parse.images import ImageFact, parse_images
from havirt.remote.commands import images as images_command
from havirt.scan.cluster import Cluster


@dataclass
class Images:
    """What one read of the pools found."""

    facts: dict[str, ImageFact] = field(default_factory=dict)   # path -> fact
    readers: dict[str, str] = field(default_factory=dict)       # folder -> node that read it
    unseen: list[str] = field(default_factory=list)             # folders no node that answered sees
    read_by: dict[str, str] = field(default_factory=dict)       # path -> node that read it

    def in_folder(self, folder: str) -> list[ImageFact]:
        return [f for p, f in sorted(self.facts.items()) if parent(p) == folder and f.kind == "file"]

    def chains(self) -> dict[str, tuple[str, ...]]:
        """path -> its backing chain, for every image read."""
        return {p: f.backing for p, f in self.facts.items() if f.backing}


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def readers(cluster: Cluster, folders) -> tuple[dict[str, str], list[str]]:
    """folder -> the node that reads and writes it; and the folders nobody sees."""
    left = sorted(set(folders))
    chosen: dict[str, str] = {}
    up = cluster.answered()
    while left:
        def seen(n):
            return [f for f in left if cluster.nodes[n].paths.get(f)]
        best = max(up, key=lambda n: len(seen(n)), default=None)   # the first of equals
        if best is None or not seen(best):
            break
        for f in seen(best):
            chosen[f] = best
        left = [f for f in left if f not in chosen]
    return chosen, left


def read_images(runner, cfg, cluster: Cluster, folders, paths=()) -> Images:
    """qemu-img info of every image in `folders` and of `paths` (disks outside
    the pools; read by the node that reads the first folder, else by the
    first node that answered and sees them). One session per reading node."""
    chosen, unseen = readers(cluster, folders)
    out = Images(readers=chosen, unseen=unseen)
    by_node: dict[str, tuple[list[str], list[str]]] = {}
    for folder, node in sorted(chosen.items()):
        by_node.setdefault(node, ([], []))[0].append(folder)
    for path in sorted(set(paths)):
        seers = [n for n in cluster.answered() if cluster.nodes[n].paths.get(path)]
        node = next((n for n in by_node if n in seers), seers[0] if seers else None)
        if node is not None:
            by_node.setdefault(node, ([], []))[1].append(path)
    results = runner.run_many({n: images_command(f, p) for n, (f, p) in by_node.items()})
    for node, res in sorted(results.items()):
        if isinstance(res, NodeUnreachable):
            raise res
        if not res.ok:
            raise RemoteError(f"reading the images on {node} failed: exit {res.exit_code}: "
                              f"{(res.stderr.strip().splitlines() or [''])[-1]}")
        for path, fact in parse_images(res.stdout, node).items():
            out.facts[path] = fact
            out.read_by[path] = node
    return out
