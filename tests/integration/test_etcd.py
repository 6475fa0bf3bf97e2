"""Several admin homes on one etcd store (README: Several admin homes (etcd)).

The lab's three-member etcd cluster (`tests/lab/lab etcd up`: one member in
each of node1..node3's network namespace) is started for this module only
and stopped after it. Every test has a prefix of its own. The homes are
folders on this host whose config.yaml points at the cluster; whatever they
do is checked with virsh on the nodes, and in etcd with etcdctl.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter

import pytest
from labkit import LAB_SCRIPT, REPORT, read_env, wait_until

ROUNDS = 50
LOCK_TTL = 5


def lab_etcd(*args, timeout=90) -> subprocess.CompletedProcess:
    p = subprocess.run([str(LAB_SCRIPT), "etcd", *args], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"lab etcd {' '.join(args)}: {p.stdout}{p.stderr}"
    return p


@pytest.fixture(scope="module")
def etcd(lab):
    lab_etcd("up")
    yield read_env()["LAB_ETCD_ENDPOINTS"].split(",")
    lab_etcd("down")


def etcdctl(endpoints, *args) -> str:
    p = subprocess.run(["etcdctl", "--endpoints", ",".join(endpoints), *args], capture_output=True,
                       text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})
    assert p.returncode == 0, p.stderr
    return p.stdout


def healthy(endpoints) -> bool:
    p = subprocess.run(["etcdctl", "--endpoints", ",".join(endpoints), "endpoint", "health"],
                       capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})
    return p.returncode == 0


@pytest.fixture
def homes(lab, etcd, new_home, request):
    """Home A: a home of files with every lab node and the lab's definitions,
    moved into etcd with `store migrate`; home B: an empty home on the same
    store. Both with lock_ttl 5 s."""
    prefix = "/it/" + request.node.name
    store = {"endpoints": etcd, "prefix": prefix, "lock_ttl": LOCK_TTL}
    a = new_home("admin-a", store=store)
    r = a.yes("store", "migrate", "--to", "etcd")
    assert "read back: identical" in r.out, r
    a.configure(store={"backend": "etcd"})
    b = new_home("admin-b", add_nodes=False, store={**store, "backend": "etcd"})
    for xml in (b.home / "conf").glob("*.xml"):
        xml.unlink()                   # whatever B shows comes from etcd
    return a, b, prefix


def test_two_homes_race_to_start_one_domain(lab, homes):
    """Each round, home A starts tinyN on node1 and home B on node2 at the same
    moment: the lock in etcd lets one start it and the other, which scans
    afterwards, is refused. Never on two nodes (virsh on every node)."""
    a, b, _ = homes
    names = [f"tiny{i}" for i in range(1, 9)]
    both = one = 0
    rcs: Counter = Counter()
    for i in range(ROUNDS):
        name = names[i % len(names)]
        if i and i % len(names) == 0:
            assert not lab.wipe()
        assert lab.where(name) == []
        p1, p2 = a.popen("--yes", "domain", "start", name, "node1"), b.popen("--yes", "domain", "start",
                                                                              name, "node2")
        r1, r2 = a.wait(p1), b.wait(p2)
        where = lab.where(name)
        rcs[(r1.rc, r2.rc)] += 1
        both += len(where) > 1
        one += len(where) == 1
        for node in where:
            lab.virsh(node, "suspend", name)      # a starting firmware burns a core: pause it
        if len(where) == 1:
            won, lost = (r1, r2) if where == ["node1"] else (r2, r1)
            assert won.rc == 0 and lost.rc == 3, (won, lost)
            assert f"{name} is already running on {where[0]}" in lost.err, lost
    REPORT.append(f"etcd start race, two homes, {ROUNDS} rounds: on two nodes {both}, exactly one "
                  f"started {one}; exit codes (home A to node1, home B to node2) {dict(rcs)}")
    assert both == 0 and one == ROUNDS, REPORT[-1]


def test_what_one_home_does_the_other_sees_at_once(lab, homes, tmp_path):
    a, b, prefix = homes
    src = tmp_path / "extra1.xml"
    src.write_text(re.sub(r"<uuid>[^<]*</uuid>", "", lab.xml("tiny2").read_text())
                   .replace("<name>tiny2</name>", "<name>extra1</name>"))
    a.ok("domain", "define", "extra1", "--file", src)
    a.yes("domain", "start", "tiny1", "node2")
    assert lab.where("tiny1") == ["node2"]
    r = b.ok("-f", "json", "domain", "list")
    rows = {d["name"]: d for d in json.loads(r.out)}
    assert rows["tiny1"]["node"] == "node2" and "extra1" in rows, r
    assert "facts from etcd at http://10.231.0.1" in r.err, r
    info = json.loads(b.ok("-f", "json", "domain", "info", "tiny1").out)
    assert info["node"] == "node2", info
    log = json.loads(b.ok("-f", "json", "log").out)
    assert [(x["node"], x["remote"].split("<<")[0].strip()) for x in log] == \
        [("node2", "virsh -c qemu:///system create /dev/stdin")], log
    assert not (b.home / "var" / "audit.log").exists() and not (b.home / "var" / "state.yaml").exists()
    assert json.loads(etcdctl(lab_endpoints(), "get", f"{prefix}/state/domains/tiny1",
                              "--print-value-only"))["node"] == "node2"


def lab_endpoints() -> list[str]:
    return read_env()["LAB_ETCD_ENDPOINTS"].split(",")


def test_one_member_down_works_two_down_refuses_then_all_works(lab, homes, etcd):
    a, b, prefix = homes
    try:
        lab_etcd("kill", "node3")
        a.yes("domain", "start", "tiny1", "node1")
        assert lab.where("tiny1") == ["node1"]
        rows = {d["name"]: d for d in json.loads(b.ok("-f", "json", "domain", "list").out)}
        assert rows["tiny1"]["node"] == "node1"

        lab_etcd("kill", "node2")
        before = etcdctl([etcd[0]], "get", prefix, "--prefix", "--consistency=s", "--keys-only")
        for r in (b.run("--yes", "domain", "start", "tiny2", "node2"), b.run("node", "list"),
                  a.run("--yes", "domain", "destroy", "tiny1")):
            assert r.rc == 6 and r.out == "" and r.err.count("\n") == 1, r
            assert "etcd did not answer (unreachable, or without quorum)" in r.err, r
            assert "http://10.231.0.12:2379: connection refused" in r.err, r
        assert lab.where("tiny2") == [] and lab.where("tiny1") == ["node1"]
        assert etcdctl([etcd[0]], "get", prefix, "--prefix", "--consistency=s", "--keys-only") == before
    finally:
        lab_etcd("start", "node2")
        lab_etcd("start", "node3")
    assert wait_until(lambda: healthy(etcd), 30)
    b.yes("domain", "start", "tiny2", "node2")
    assert lab.where("tiny2") == ["node2"]
    a.yes("domain", "destroy", "tiny1")
    assert lab.where("tiny1") == []


def test_a_holder_killed_with_sigkill_frees_the_lock_within_lock_ttl(lab, homes, etcd):
    """Home A's `node scan` holds the lock while node3's libvirtd is frozen
    (its session waits); A is killed with SIGKILL; home B's start waits for the
    lease to run out, then proceeds."""
    a, b, prefix = homes
    lab.fault("node3", "libvirtd-freeze")
    p = a.popen("node", "scan")
    assert wait_until(lambda: etcdctl(etcd, "get", f"{prefix}/lock", "--print-value-only").strip(), 10)
    time.sleep(LOCK_TTL / 2)          # past a renewal: a live holder keeps it beyond one TTL
    os.killpg(p.pid, signal.SIGKILL)
    killed = time.monotonic()
    p.communicate()
    pb = b.popen("--yes", "domain", "start", "tiny3", "node1")   # waits for the lock, then scans
    lab.fault("node3", "libvirtd-thaw")
    r = b.wait(pb)
    waited = time.monotonic() - killed
    assert r.rc == 0, r
    assert lab.where("tiny3") == ["node1"]
    REPORT.append(f"etcd lock: holder killed with SIGKILL; the other home's start, begun at once, "
                  f"took {r.seconds:.1f} s (lock_ttl {LOCK_TTL} s)")
    assert 2 <= r.seconds <= LOCK_TTL + 5 and waited <= LOCK_TTL + 6, r
    assert etcdctl(etcd, "get", f"{prefix}/lock", "--print-value-only").strip() == ""


def test_migrate_into_etcd_and_back_gives_the_same_files(lab, etcd, new_home, tmp_path):
    """The lab home after some work: into etcd, and back into another home's
    files: state, definitions, history and audit log identical, byte for byte."""
    prefix = "/it/migrate"
    a = new_home("demo", store={"endpoints": etcd, "prefix": prefix})
    a.yes("domain", "start", "tiny1", "node1")
    src = tmp_path / "tiny2.xml"
    src.write_text(lab.xml("tiny2").read_text().replace("32</memory>", "40</memory>"))
    a.ok("domain", "define", "tiny2", "--file", src, "--force")
    kept = {str(p.relative_to(a.home)): p.read_bytes() for p in sorted(a.home.rglob("*"))
            if p.is_file() and p.name not in ("havirt.lock", "config.yaml")}
    assert any(k.startswith("conf/.history/tiny2/") for k in kept) and "var/audit.log" in kept
    a.yes("store", "migrate", "--to", "etcd")
    back = new_home("back", add_nodes=False, store={"endpoints": etcd, "prefix": prefix,
                                                    "backend": "etcd"})
    for xml in (back.home / "conf").glob("*.xml"):
        xml.unlink()
    r = back.yes("store", "migrate", "--to", "files")
    assert "read back: identical" in r.out, r
    got = {str(p.relative_to(back.home)): p.read_bytes() for p in sorted(back.home.rglob("*"))
           if p.is_file() and p.name not in ("havirt.lock", "config.yaml")}
    assert got == kept
    assert etcdctl(etcd, "get", prefix, "--prefix", "--keys-only").strip() == ""
