"""Node removal, import --all and an offline migration that must not go
ahead, against the lab's real nodes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from labkit import refused


def test_node_remove(lab, hv):
    hv.yes("domain", "start", "tiny1", "node3")
    refused(hv.run("node", "remove", "node3"), "domains run on node3: tiny1")
    assert "node3" in hv.state()["nodes"] and lab.where("tiny1") == ["node3"]

    hv.yes("domain", "destroy", "tiny1")
    assert lab.where("tiny1") == []
    r = hv.ok("node", "remove", "node3")
    assert r.out.strip() == "removed node3", r
    assert "node3" not in hv.state()["nodes"]
    hv.ok("node", "add", "node3", "--address", lab.address("node3"))
    assert "node3" in hv.state()["nodes"]


def test_import_all(lab, hv):
    lab.create("node1", "tiny1")
    lab.create("node1", "disk1")
    for name in ("tiny1", "disk1"):
        (hv.home / "conf" / f"{name}.xml").unlink()
    r = hv.ok("domain", "import", "--all", "--from", "node1")
    for name in ("tiny1", "disk1"):
        conf = hv.home / "conf" / f"{name}.xml"
        assert f"saved {conf}" in r.out, r
        assert ET.fromstring(conf.read_text()).findtext("name") == name
    assert sorted(lab.running("node1")) == ["disk1", "tiny1"]     # import changes no node


def test_offline_migration_of_a_guest_that_ignores_shutdown(lab, hv):
    """The lab's domains have no OS: the shutdown is never obeyed, so the wait
    runs out and the domain must NOT be started on the target."""
    hv.yes("domain", "start", "tiny1", "node1")
    r = hv.run("--yes", "domain", "migrate", "tiny1", "node2", "--offline", "--timeout", "3")
    assert r.rc == 1 and "still running on node1 after 3 s;" in r.err and "--force" not in r.err, r
    assert lab.where("tiny1") == ["node1"]
    assert hv.dom("tiny1")["node"] == "node1"
