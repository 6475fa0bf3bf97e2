"""cluster status (with N+1) and cluster balance (plans as data, the stop rule,
N+1 kept) through the command line, on the fake cluster."""

import json

import pytest


def survivable(fake):
    """Three nodes of 8 GiB (7168 MiB usable); a few small domains: any loss survivable."""
    for n in ("node1", "node2", "node3"):
        fake.node(n, memory_mib=8192)
    for i, n in enumerate(("node1", "node1", "node2")):
        fake.conf(f"web{i}", memory_mib=1024)
        fake.nodes[n].add(f"web{i}", memory_mib=1024)
    fake.havirt("node", "scan")


def test_status_json_has_n_plus_1_per_node_and_for_the_cluster(fake):
    survivable(fake)
    rc, out, err = fake.havirt("-f", "json", "cluster", "status")
    assert rc == 0, err
    doc = json.loads(out)
    assert list(doc) == ["nodes", "totals", "score", "n_plus_1", "anomalies"]
    assert [r["survives_loss"] for r in doc["nodes"]] == [True, True, True]
    assert doc["n_plus_1"]["ok"] is True and doc["n_plus_1"]["failing"] == []
    loss = doc["n_plus_1"]["nodes"]["node1"]
    assert list(loss) == ["survives_loss", "restarts", "stranded", "missing_mib", "missing_vcpus"]
    assert (loss["survives_loss"], loss["stranded"], loss["missing_mib"]) == (True, [], 0)
    assert sorted(m["domain"] for m in loss["restarts"]) == ["web0", "web1"]
    assert all(m["to"] in ("node2", "node3") and m["from"] == "node1" for m in loss["restarts"])
    rc, out, err = fake.havirt("cluster", "status")
    assert "N+1: the cluster survives the loss of any one node" in out


def test_status_n_plus_1_checks_the_disks_on_the_nodes(fake):
    """N+1 asks the nodes whether they see each disk, as failover would: a
    disk every node sees is no reason to strand its domain, one seen by no
    other node is (with and without --no-scan, which assumes every disk seen)."""
    for n in ("node1", "node2", "node3"):
        fake.node(n, memory_mib=8192).paths = {"/shared/web.img"}
    fake.nodes["node1"].paths.add("/local/db.img")
    fake.conf("web", memory_mib=1024, disks=["/shared/web.img"])
    fake.conf("db", memory_mib=1024, disks=["/local/db.img"])
    fake.nodes["node2"].add("web", memory_mib=1024, disks=["/shared/web.img"])
    fake.nodes["node1"].add("db", memory_mib=1024, disks=["/local/db.img"])
    fake.havirt("node", "scan")
    rc, out, err = fake.havirt("-f", "json", "cluster", "status")
    doc = json.loads(out)
    assert {r["name"]: r["survives_loss"] for r in doc["nodes"]} == \
        {"node1": False, "node2": True, "node3": True}, doc["n_plus_1"]
    assert [m["domain"] for m in doc["n_plus_1"]["nodes"]["node2"]["restarts"]] == ["web"]
    assert [d["domain"] for d in doc["n_plus_1"]["nodes"]["node1"]["stranded"]] == ["db"]
    rc, out, err = fake.havirt("-f", "json", "cluster", "status", "--no-scan")
    assert json.loads(out)["n_plus_1"]["ok"] is True          # what-if: every disk assumed seen


def test_status_says_what_would_not_restart_and_what_is_missing(fake):
    for n in ("node1", "node2"):
        fake.node(n, memory_mib=4096)                 # 3072 MiB usable each
    fake.conf("big", memory_mib=2048, vcpus=2)
    fake.conf("small", memory_mib=512)
    fake.nodes["node1"].add("big", memory_mib=2048, vcpus=2)
    fake.nodes["node2"].add("small", memory_mib=512)
    fake.nodes["node2"].add("noxml", memory_mib=256)  # no conf/ XML: failover could not restart it
    fake.havirt("node", "scan")
    rc, out, err = fake.havirt("-f", "json", "cluster", "status")
    doc = json.loads(out)
    rows = {r["name"]: r["survives_loss"] for r in doc["nodes"]}
    assert rows == {"node1": True, "node2": False}
    loss = doc["n_plus_1"]["nodes"]["node2"]
    assert loss["stranded"] == [{"domain": "noxml", "reason": "no usable XML in conf/ (not movable)",
                                 "memory_mib": 256, "vcpus": 1}]
    assert doc["n_plus_1"]["failing"] == ["node2"]
    rc, out, err = fake.havirt("cluster", "status", "--no-scan")
    assert ("N+1: if node2 is lost, 1 domain(s) would not restart (256 MiB, 1 vCPUs missing): "
            "noxml: no usable XML in conf/ (not movable)") in out


def test_status_n_plus_1_leaves_domains_in_maintenance_down_as_failover_does(fake):
    fake.node("node1", memory_mib=4096)
    fake.node("node2", memory_mib=3072)
    fake.conf("big", memory_mib=2500)
    fake.nodes["node1"].add("big", memory_mib=2500)
    fake.nodes["node2"].add("x", memory_mib=128)
    fake.conf("x", memory_mib=128)
    fake.havirt("node", "scan")
    doc = json.loads(fake.havirt("-f", "json", "cluster", "status")[1])
    assert doc["n_plus_1"]["failing"] == ["node1"]      # 2500 does not fit next to x on node2
    fake.havirt("domain", "maintenance", "big", "on")
    doc = json.loads(fake.havirt("-f", "json", "cluster", "status", "--no-scan")[1])
    assert doc["n_plus_1"]["failing"] == []             # failover would leave big down anyway


def skewed(fake, nodes=4):
    for k in range(1, nodes + 1):
        fake.node(f"node{k}", memory_mib=16384, cpus=8)
    for i in range(10):
        fake.conf(f"d{i}", memory_mib=1024 + 256 * (i % 3))
        fake.nodes["node1" if i < 8 else "node2"].add(f"d{i}", memory_mib=1024 + 256 * (i % 3))
    fake.havirt("node", "scan")


def plan(fake, *args):
    rc, out, err = fake.havirt("-f", "json", "cluster", "balance", *args)
    assert rc == 0, err
    return json.loads(out)


def test_balance_plan_as_data(fake):
    skewed(fake)
    doc = plan(fake)
    assert doc["dry_run"] is True
    moves = doc["moves"]
    assert moves and all(list(m) == ["domain", "from", "to", "memory_mib", "score_after"] for m in moves)
    assert doc["memory_mib"] == sum(m["memory_mib"] for m in moves)
    assert doc["score_after"] == moves[-1]["score_after"] < doc["score_before"]
    scores = [doc["score_before"]] + [m["score_after"] for m in moves]
    assert all(b <= a + 1e-9 for a, b in zip(scores, scores[1:]))      # every prefix is better
    assert len({m["domain"] for m in moves}) == len(moves)             # no domain moves twice
    assert doc["n_plus_1_after"]["ok"] is True
    assert len(doc["commands"]) == len(moves)


def test_balance_max_moves_none_min_gain_and_no_n_plus_1(fake):
    skewed(fake)
    full = plan(fake, "--max-moves", "none", "--min-gain", "0")
    five = plan(fake, "--max-moves", "2")
    assert len(five["moves"]) == 2 and five["moves"] == full["moves"][:2]   # the same first moves
    assert plan(fake, "--min-gain", "100")["moves"] == []
    off = plan(fake, "--no-n-plus-1")
    assert off["n_plus_1_before"] is None and off["n_plus_1_after"] is None
    _, err = fake.refused("--yes", "cluster", "balance", "--max-moves", "0", code=2)
    assert "a number of moves from 1 to 100000, or 'none' for no limit" in err


def test_balance_min_gain_from_config_in_any_notation(fake):
    skewed(fake)
    fake.write_config(balance={"min_gain": 1e-6})
    rc, out, err = fake.havirt("cluster", "balance")
    assert rc == 0, err
    (fake.home / "config.yaml").write_text("balance:\n  min_gain: 1e-6\n  max_moves: null\n")
    rc, out, err = fake.havirt("-f", "json", "cluster", "balance")
    assert rc == 0, err
    assert len(json.loads(out)["moves"]) > 1
    (fake.home / "config.yaml").write_text("balance:\n  min_gain: 1e2\n")      # the config reaches the planner
    rc, out, err = fake.havirt("-f", "json", "cluster", "balance")
    assert rc == 0 and json.loads(out)["moves"] == [], err
    (fake.home / "config.yaml").write_text("balance:\n  min_gain: 1e-6\n  max_moves: 1\n")
    rc, out, err = fake.havirt("-f", "json", "cluster", "balance")
    assert rc == 0 and len(json.loads(out)["moves"]) == 1, err


@pytest.mark.parametrize("value", ["-1", "nan", "x"])
def test_balance_bad_min_gain(fake, value):
    skewed(fake)
    _, err = fake.refused("--yes", "cluster", "balance", "--min-gain", value, code=2)
    assert err.startswith("havirt: ") and len(err.splitlines()) == 1


def test_weights_from_config_reach_the_score_and_the_plan(fake):
    """Memory is even (2048 MiB on each node), vCPU ratios are not (2.0 and
    0.5 on 4 CPUs): the score is the vCPU spread (0.75) times its weight."""
    for n in ("node1", "node2"):
        fake.node(n, memory_mib=8192, cpus=4)
    for name, node, vcpus in (("a", "node1", 4), ("b", "node1", 4), ("c", "node2", 1), ("d", "node2", 1)):
        fake.conf(name, memory_mib=1024, vcpus=vcpus)
        fake.nodes[node].add(name, memory_mib=1024, vcpus=vcpus)
    fake.havirt("node", "scan")
    for weights, score in (({}, 0.375), ({"vcpu": 1}, 0.75), ({"vcpu": 0}, 0.0), ({"memory": 0, "vcpu": 2}, 1.5)):
        fake.write_config(balance={"weights": weights, "min_gain": 0})
        rc, out, err = fake.havirt("-f", "json", "cluster", "status")
        assert rc == 0, err
        assert json.loads(out)["score"] == pytest.approx(score)
        doc = plan(fake)
        assert doc["score_before"] == pytest.approx(score)
        # memory alone: nothing to gain; else vCPUs move from node1 to node2
        assert bool(doc["moves"]) == (score > 0), doc["moves"]
        assert all((m["from"], m["to"]) == ("node1", "node2") for m in doc["moves"][:1])
