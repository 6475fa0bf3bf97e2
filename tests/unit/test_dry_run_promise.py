"""A dry run promises what --yes does: on many random clusters, every move a
dry-run `cluster balance` or `node maintenance NODE on` plans is carried out
by --yes on the unchanged cluster, none refused."""

import json
import random

import pytest
from conftest import FakeCluster


def random_cluster(fake: FakeCluster, seed: int) -> None:
    rng = random.Random(seed)
    n_nodes = rng.randint(3, 5)
    names = [f"node{k}" for k in range(1, n_nodes + 1)]
    disks = {f"/shared/d{i}": set(rng.sample(names, rng.randint(1, n_nodes))) for i in range(3)}
    for name in names:
        node = fake.node(name, cpus=rng.choice([2, 4, 8]), memory_mib=rng.choice([4096, 6144, 8192]))
        node.paths = {p for p, where in disks.items() if name in where}
    for i in range(rng.randint(4, 14)):
        name = f"dom{i}"
        conf_mem = rng.choice([256, 512, 1024, 1536, 2048])
        live_mem = rng.choice([conf_mem, conf_mem, conf_mem // 2])      # some ballooned down
        vcpus = rng.choice([1, 1, 2, 4])
        dk = [rng.choice(sorted(disks))] if rng.random() < 0.3 else []
        fake.conf(name, memory_mib=conf_mem, vcpus=vcpus, disks=dk)
        # crowd the first node(s), within their limits where possible
        for k in sorted(range(n_nodes), key=lambda k: (rng.random() * 3 + k)):
            node = fake.nodes[names[k]]
            used = sum(d.memory_mib for d in node.domains.values())
            vused = sum(d.vcpus for d in node.domains.values())
            if used + live_mem <= node.memory_mib - 1024 and vused + vcpus <= node.cpus * 4 \
                    and all(p in node.paths for p in dk):
                node.add(name, memory_mib=live_mem, vcpus=vcpus)
                break


def placement(fake):
    return {d: n.name for n in fake.nodes.values() for d in n.domains}


def planned(fake, *args):
    rc, out, err = fake.havirt("-f", "json", *args)
    assert rc == 0, err
    doc = json.loads(out)
    return [(m["domain"], m["from"], m["to"]) for m in doc["moves"]]


def check(fake, args, expect_moves_at_least=0):
    before = placement(fake)
    moves = planned(fake, *args)
    assert placement(fake) == before                       # the dry run changed nothing
    rc, out, err = fake.havirt("--yes", "-f", "json", *args)
    assert rc == 0, (moves, out, err)                      # nothing it planned was refused
    done = [line for line in json.loads(out)["done"] if " moved from " in line]
    assert done == [f"{d} moved from {a} to {b}" for d, a, b in moves]
    after = dict(before)
    for d, _, b in moves:
        after[d] = b
    assert placement(fake) == after
    return moves


@pytest.mark.parametrize("seed", range(24))
def test_balance_dry_run_is_what_yes_does(tmp_path, capsys, seed):
    fake = FakeCluster(tmp_path, capsys)
    random_cluster(fake, seed)
    fake.havirt("node", "scan")
    check(fake, ("cluster", "balance", "--max-moves", "10"))
    assert not fake.unexpected


@pytest.mark.parametrize("seed", range(24))
def test_maintenance_dry_run_is_what_yes_does(tmp_path, capsys, seed):
    fake = FakeCluster(tmp_path, capsys)
    random_cluster(fake, seed)
    fake.havirt("node", "scan")
    busiest = max(fake.nodes.values(), key=lambda n: len(n.domains)).name
    moves = check(fake, ("node", "maintenance", busiest, "on"))
    assert all(a == busiest for _, a, _ in moves)
    assert not fake.unexpected


def test_the_random_clusters_do_need_moves(tmp_path, capsys):
    """The property is not empty: most random clusters give plans with moves."""
    with_moves = 0
    for seed in range(24):
        fake = FakeCluster(tmp_path / str(seed), capsys)
        random_cluster(fake, seed)
        fake.havirt("node", "scan")
        with_moves += bool(planned(fake, "cluster", "balance", "--max-moves", "10"))
    assert with_moves >= 16


@pytest.mark.parametrize("seed", range(24))
def test_failover_dry_run_is_what_yes_does(tmp_path, capsys, seed):
    fake = FakeCluster(tmp_path, capsys)
    random_cluster(fake, seed)
    fake.havirt("node", "scan")
    busiest = max(fake.nodes.values(), key=lambda n: len(n.domains))
    busiest.reachable = False                 # powered off: its guests are gone
    busiest.domains.clear()
    args = ("node", "failover", busiest.name, "--confirm-off")
    rc, out, err = fake.havirt("-f", "json", *args)
    assert rc == 0, err
    moves = [(m["domain"], m["to"]) for m in json.loads(out)["moves"]]
    assert moves                                           # these clusters all have some to restart
    rc, out, err = fake.havirt("--yes", "-f", "json", *args)
    assert rc == 0, (moves, out, err)                      # every planned start happened
    results = json.loads(out)["results"]
    assert [(r["domain"], r["node"]) for r in results] == moves
    assert all(r["outcome"] == f"started on {r['node']}" for r in results)
    for d, target in moves:
        assert [n.name for n in fake.nodes.values() if d in n.domains] == [target]
    assert not fake.unexpected
