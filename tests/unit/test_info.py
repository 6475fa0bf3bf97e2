"""domain info: a fresh scan of every node (one session each), the live XML read in it."""

import json

from fakes import is_scan

V = "virsh -c qemu:///system"


def xml(name="web1", memory=512, vcpus=2, port="-1", tty=None, mac="52:54:00:00:00:01",
        disks=("/srv/web1.img",)):
    disk = "".join(f"<disk type='file' device='disk'><source file='{d}'/><target dev='vd{chr(97 + i)}'/>"
                   "</disk>" for i, d in enumerate(disks))
    console = (f"<console type='pty' tty='{tty}'><source path='{tty}'/><target type='serial' port='0'/>"
               "</console>" if tty else "<console type='pty'><target type='serial' port='0'/></console>")
    auto = "yes" if port == "-1" else "no"
    return (f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>{memory}</memory>"
            f"<vcpu>{vcpus}</vcpu><os><type arch='x86_64'>hvm</type></os><devices>{disk}"
            f"<interface type='bridge'><mac address='{mac}'/><source bridge='br0'/>"
            "<model type='virtio'/></interface>"
            f"<serial type='pty'><target port='0'/></serial>{console}"
            f"<graphics type='vnc' port='{port}' autoport='{auto}' listen='127.0.0.1'/>"
            "</devices></domain>\n")


def setup(fake, running=True, live=None):
    a, b, c = fake.node("node1"), fake.node("node2"), fake.node("node3")
    (fake.home / "conf" / "web1.xml").write_text(xml())
    a.paths.add("/srv/web1.img")
    b.paths.add("/srv/web1.img")
    if running:
        b.add("web1", memory_mib=512, vcpus=2)
        b.xml["web1"] = live or xml(port="5901", tty="/dev/pts/3")
    return a, b, c


def info(fake, *args):
    rc, out, err = fake.havirt("-f", "json", "domain", "info", "web1", *args)
    assert rc == 0, err
    return json.loads(out)


def test_a_running_domain_in_full_from_one_session_per_node(fake):
    setup(fake)
    doc = info(fake)
    assert list(doc) == ["name", "kind", "state", "node", "nodes", "unreachable", "conf_file", "xml_error",
                         "memory_mib", "vcpus", "definition", "disks", "interfaces", "graphics",
                         "consoles", "maintenance", "base_of", "last_seen", "drift", "anomalies"]
    assert (doc["state"], doc["node"], doc["nodes"], doc["unreachable"]) == \
        ("running", "node2", ["node2"], [])
    assert doc["memory_mib"] == {"running": 512, "conf": 512}
    assert doc["vcpus"] == {"running": 2, "conf": 2}
    assert doc["definition"] == "running" and doc["conf_file"] == "conf/web1.xml"
    assert doc["disks"] == [{"target": "vda", "device": "disk", "type": "file",
                             "path": "/srv/web1.img", "backing": [], "missing_on": ["node3"],
                             "everywhere": False}]
    assert doc["interfaces"] == [{"type": "bridge", "source": "br0", "mac": "52:54:00:00:00:01",
                                  "model": "virtio"}]
    assert doc["graphics"] == [{"type": "vnc", "port": 5901, "listen": "127.0.0.1",
                                "autoport": False}]
    assert doc["consoles"] == [{"type": "pty", "target": "serial", "path": "/dev/pts/3"}]
    assert doc["drift"] == [] and doc["anomalies"] == []
    assert doc["last_seen"] == fake.state().domains["web1"].last_seen
    scans = [(n, c) for n, c in fake.calls]
    assert sorted(n for n, _ in scans) == ["node1", "node2", "node3"]
    assert all(is_scan(c) and "for d in web1; do printf '@@xml" in c and "/srv/web1.img" in c
               for _, c in scans)


def test_info_shows_drift_and_records_what_it_read_for_domain_list(fake):
    setup(fake, live=xml(memory=1024, disks=("/srv/web1.img", "/srv/extra.img")))
    fake.nodes["node2"].domains["web1"].memory_mib = 1024
    doc = info(fake)
    assert doc["drift"] == ["memory 1024 MiB running, 512 MiB in conf/",
                            "disks ['/srv/extra.img', '/srv/web1.img'] running, "
                            "['/srv/web1.img'] in conf/"]
    assert [d["path"] for d in doc["disks"]] == ["/srv/web1.img", "/srv/extra.img"]
    extra = doc["disks"][1]
    assert extra["everywhere"] is None                       # not in conf/: not checked this time
    rows = json.loads(fake.havirt("-f", "json", "domain", "list")[1])
    assert rows[0]["drift"] == ["memory", "disks"]
    # the next info checks the disk the running definition was recorded with
    assert info(fake)["disks"][1]["missing_on"] == ["node1", "node2", "node3"]


def test_a_stopped_domain_is_described_from_conf(fake):
    setup(fake, running=False)
    doc = info(fake)
    assert (doc["state"], doc["node"], doc["nodes"], doc["definition"]) == \
        ("shut off", None, [], "conf")
    assert doc["memory_mib"] == {"running": None, "conf": 512}
    assert doc["graphics"] == [{"type": "vnc", "port": None, "listen": "127.0.0.1", "autoport": True}]
    assert doc["consoles"] == [{"type": "pty", "target": "serial", "path": None}]
    rc, out, _ = fake.havirt("domain", "info", "web1")
    lines = out.splitlines()
    assert lines[:4] == ["domain       web1", "state        shut off",
                         "memory       512 MiB in conf/", "vcpus        2 in conf/"]
    assert "disk vda     /srv/web1.img (disk; missing on node3) (conf/)" in lines
    assert "display      vnc port chosen at start (conf/)" in lines
    assert "console      pty serial" in lines


def test_a_silent_node_makes_the_state_unknown_unless_it_runs_elsewhere(fake):
    _, _, c = setup(fake, running=False)
    c.reachable = False
    rc, out, err = fake.havirt("-f", "json", "domain", "info", "web1")
    assert rc == 0, err
    doc = json.loads(out)
    assert (doc["state"], doc["unreachable"]) == ("unknown", ["node3"])
    assert doc["disks"][0]["everywhere"] is None                   # node3 could not say
    assert [a["kind"] for a in doc["anomalies"]] == ["unreachable"]
    rc, out, err = fake.havirt("domain", "info", "web1")
    assert "state        unknown (not checked: node3 did not answer)" in out
    assert err.startswith("ERROR unreachable node3: ")


def test_a_silent_node_leaves_the_state_known_when_the_domain_runs_elsewhere(fake):
    _, _, c = setup(fake)
    c.reachable = False
    rc, out, err = fake.havirt("-f", "json", "domain", "info", "web1")
    doc = json.loads(out)
    assert rc == 0 and (doc["state"], doc["node"], doc["unreachable"]) == ("running", "node2", ["node3"])


def test_screen_and_tsv_of_a_running_domain(fake):
    setup(fake)
    rc, out, err = fake.havirt("domain", "info", "web1")
    assert rc == 0 and err == "", err
    assert out.splitlines() == [
        "domain       web1",
        "state        running on node2",
        "memory       512 MiB running, 512 MiB in conf/",
        "vcpus        2 running, 2 in conf/",
        "disk vda     /srv/web1.img (disk; missing on node3) (running definition)",
        "interface    bridge br0 52:54:00:00:00:01 virtio (running definition)",
        "display      vnc 127.0.0.1:5901 (running definition)",
        "console      pty serial /dev/pts/3 (havirt domain console web1)",
        "maintenance  no",
        f"last seen    {fake.state().domains['web1'].last_seen}",
        "conf/        conf/web1.xml",
    ]
    rc, out, _ = fake.havirt("-f", "tsv", "domain", "info", "web1")
    lines = out.splitlines()
    assert lines[0] == "field\tvalue" and lines[2] == "state\trunning on node2"


def test_a_domain_without_conf_or_with_a_broken_one(fake):
    a, b, _ = setup(fake)
    a.add("ghost", memory_mib=64)
    doc = json.loads(fake.havirt("-f", "json", "domain", "info", "ghost")[1])
    assert (doc["node"], doc["conf_file"], doc["definition"]) == ("node1", None, None)
    assert doc["memory_mib"] == {"running": 64, "conf": None}
    (fake.home / "conf" / "web1.xml").write_text("<domain><name>web1</name>")
    doc = info(fake)
    assert "not valid XML" in doc["xml_error"] and doc["definition"] == "running"
    assert doc["disks"][0]["everywhere"] is None and doc["drift"] == []


def test_a_domain_on_two_nodes_is_shown_on_both(fake):
    a, b, _ = setup(fake)
    a.add("web1", memory_mib=512, vcpus=2)
    rc, out, err = fake.havirt("domain", "info", "web1")
    assert rc == 0
    assert "state        running on node1, node2 (MORE THAN ONE NODE)" in out
    assert err.startswith("CRITICAL duplicate web1: DOMAIN web1 RUNS ON 2 NODES AT ONCE")


def test_unknown_domain_is_exit_2(fake):
    setup(fake)
    rc, out, err = fake.havirt("domain", "info", "web9")
    assert (rc, out) == (2, "")
    assert err == ("havirt: unknown domain 'web9': no "
                   f"{fake.home}/conf/web9.xml, and no node that answered runs it\n")


def test_a_disk_a_node_did_not_check_is_not_checked_not_missing():
    """rules.disks, as validate and placement say it: missing only where a
    node said so; everywhere only when every node saw it."""
    from facts import spec, world

    from havirt.ops.info import describe
    raw = xml(disks=("/d/a",)).encode()
    conf = spec("web1", disks=["/d/a"])
    conf.raw = raw

    def disk(nodes):
        cluster, _ = world(nodes)
        return describe("web1", cluster, None, conf, None, None)["disks"][0]

    assert disk({"node1": {"paths": {"/d/a": True}}, "node2": {"paths": {}}}) == \
        {"target": "vda", "device": "disk", "type": "file", "path": "/d/a", "backing": [],
         "missing_on": [], "everywhere": None}
    assert disk({"node1": {"paths": {"/d/a": True}}, "node2": {"paths": {"/d/a": True}}})["everywhere"]
    got = disk({"node1": {"paths": {"/d/a": False}}, "node2": {"paths": {}}})
    assert (got["missing_on"], got["everywhere"]) == (["node1"], False)
    got = disk({"node1": {"paths": {"/d/a": True}}, "node2": {"reachable": False}})
    assert (got["missing_on"], got["everywhere"]) == ([], None)
