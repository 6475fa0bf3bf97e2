"""havirt store migrate: a home's facts into etcd and back, byte for byte."""

import json

from conftest import domain_xml

from havirt.store import etcdclient as e
from havirt.store.storeconfig import StoreConfig


def etcd_keys(etcd):
    kvs, _ = e.Etcd(StoreConfig("etcd", [etcd.url])).range(etcd.prefix + "/", prefix=True)
    return {kv["key"].decode()[len(etcd.prefix) + 1:]: kv["value"] for kv in kvs}


def files_of(home):
    """Every file havirt keeps in a home (the lock aside), by its path."""
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*"))
            if p.is_file() and p.name not in ("havirt.lock", "config.yaml")}


def lived_in(fake, tmp_path):
    """A home with nodes, definitions, a history and an audit log."""
    a, b = fake.node("node1"), fake.node("node2")
    fake.conf("web1", memory_mib=512)
    fake.conf("web2", memory_mib=64)
    src = tmp_path / "web2.xml"
    src.write_text(domain_xml("web2", memory_mib=128))
    assert fake.havirt("domain", "define", "web2", "--file", str(src), "--force")[0] == 0
    assert fake.havirt("--yes", "domain", "start", "web1", "node2")[0] == 0
    assert fake.havirt("node", "maintenance", "node1", "on")[0] == 0
    return a, b


def test_into_etcd_and_back_gives_the_same_files(fake, etcd, tmp_path):
    lived_in(fake, tmp_path)
    before = files_of(fake.home)
    assert {"var/state.yaml", "var/audit.log", "conf/web1.xml", "conf/web2.xml"} <= set(before)
    assert any(k.startswith("conf/.history/web2/") for k in before)
    fake.write_config(store={"endpoints": [etcd.url], "prefix": etcd.prefix})

    rc, out, err = fake.havirt("store", "migrate", "--to", "etcd")       # the dry run
    assert rc == 0, err
    assert "# copy 2 node(s), 1 domain record(s), 2 definition(s), 1 kept version(s) in the history, " \
           "1 audit entry" in out and "dry run" in out
    assert etcd_keys(etcd) == {} and files_of(fake.home) == before

    rc, out, err = fake.havirt("--yes", "store", "migrate", "--to", "etcd")
    assert rc == 0, err
    assert "read back: identical" in out and "now set store.backend: etcd" in out
    keys = etcd_keys(etcd)
    assert keys["conf/web2.xml"] == before["conf/web2.xml"]
    assert json.loads(keys["state/nodes/node1"])["maintenance"] is True
    moved = [p for p in (fake.home / "var").iterdir() if p.name.startswith("moved-")]
    assert len(moved) == 1 and not (fake.home / "var" / "state.yaml").exists()
    assert not list((fake.home / "conf").glob("*.xml"))

    fake.write_config(store={**fake.config["store"], "backend": "etcd"})
    rc, out, err = fake.havirt("-f", "json", "domain", "list")
    assert rc == 0 and {r["name"]: r["node"] for r in json.loads(out)} == {"web1": "node2", "web2": None}
    rc, out, err = fake.havirt("-f", "json", "log")
    assert [x["node"] for x in json.loads(out)] == ["node2"]

    rc, out, err = fake.havirt("--yes", "store", "migrate", "--to", "files")
    assert rc == 0, err
    assert etcd_keys(etcd) == {}
    after = {k: v for k, v in files_of(fake.home).items() if not k.startswith("var/moved-")}
    assert after == before


def test_a_target_that_holds_facts_is_refused(fake, etcd, tmp_path):
    lived_in(fake, tmp_path)
    fake.write_config(store={"endpoints": [etcd.url], "prefix": etcd.prefix})
    e.Etcd(StoreConfig("etcd", [etcd.url])).txn([], [e.put(etcd.prefix + "/conf/x.xml", "<domain/>")])
    before = files_of(fake.home)
    rc, out, err = fake.havirt("--yes", "store", "migrate", "--to", "etcd")
    assert rc == 3 and err.count("\n") == 1
    assert "holds facts already (0 node(s), 0 domain record(s), 1 definition(s)" in err
    assert files_of(fake.home) == before and list(etcd_keys(etcd)) == ["conf/x.xml"]


def test_usage_errors(fake, etcd):
    fake.node("node1")
    rc, out, err = fake.havirt("--yes", "store", "migrate", "--to", "etcd")
    assert rc == 2 and "key 'store.endpoints' must list the etcd members' client URLs" in err
    rc, out, err = fake.havirt("--yes", "store", "migrate", "--to", "files")
    assert rc == 2 and "the home's store is files already" in err
