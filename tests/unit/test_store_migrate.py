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


def test_a_copy_that_fails_part_way_is_taken_out_of_the_target(fake, etcd, tmp_path):
    """web3's definition is larger than etcd takes in one request (1.5 MiB):
    the copy stops after web1 and web2. What it copied is removed from etcd,
    the home is as it was, and once web3 is smaller the move can be run again."""
    lived_in(fake, tmp_path)
    big = domain_xml("web3", memory_mib=64).replace("</domain>", f"<!-- {'x' * (2 << 20)} --></domain>")
    (fake.home / "conf" / "web3.xml").write_text(big)
    fake.write_config(store={"endpoints": [etcd.url], "prefix": etcd.prefix})
    before = files_of(fake.home)
    rc, out, err = fake.havirt("--yes", "store", "migrate", "--to", "etcd")
    assert rc == 6 and err.count("\n") == 1, (out, err)
    assert f"etcd {etcd.prefix}/conf/web3.xml: etcd at {etcd.url} refused a request: " in err, err
    assert "larger than max" in err, err
    assert "the part copied into etcd" in err and "was removed" in err, err
    assert etcd_keys(etcd) == {} and files_of(fake.home) == before
    (fake.home / "conf" / "web3.xml").write_text(domain_xml("web3", memory_mib=64))
    rc, out, err = fake.havirt("--yes", "store", "migrate", "--to", "etcd")
    assert rc == 0 and "read back: identical" in out, err
    assert "conf/web3.xml" in etcd_keys(etcd)


def test_a_copy_into_files_that_fails_part_way_leaves_the_home_empty(fake, etcd, tmp_path):
    """A kept version etcd holds under a name a home does not read back (not
    *.xml): the copy differs, is taken out of the home again, etcd keeps all."""
    lived_in(fake, tmp_path)
    fake.write_config(store={"endpoints": [etcd.url], "prefix": etcd.prefix})
    assert fake.havirt("--yes", "store", "migrate", "--to", "etcd")[0] == 0
    fake.write_config(store={**fake.config["store"], "backend": "etcd"})
    e.Etcd(StoreConfig("etcd", [etcd.url])).txn([], [e.put(etcd.prefix + "/history/web2/notes.txt", "x")])
    before = etcd_keys(etcd)
    rc, out, err = fake.havirt("--yes", "store", "migrate", "--to", "files")
    assert rc == 1 and err.startswith("facts from etcd at") and err.count("\n") == 2, (out, err)
    assert "differs from the source in the history of web2" in err and f"the part copied into files in " \
           f"{fake.home} was removed; the source was left as it was" in err, err
    assert etcd_keys(etcd) == before
    assert not [p for p in (fake.home / "conf").rglob("*") if p.is_file()]
    assert not (fake.home / "var" / "state.yaml").exists() and not (fake.home / "var" / "audit.log").exists()


def test_entries_etcd_refused_go_into_the_files_audit_log(fake, etcd, tmp_path):
    """Entries etcd refused (too large for it) wait in var/audit-refused.log
    of an etcd home; a move into files puts them at the end of the audit log
    (which takes them) and moves their file aside: nothing left behind."""
    lived_in(fake, tmp_path)
    fake.write_config(store={"endpoints": [etcd.url], "prefix": etcd.prefix})
    assert fake.havirt("--yes", "store", "migrate", "--to", "etcd")[0] == 0
    fake.write_config(store={**fake.config["store"], "backend": "etcd"})
    refused = fake.home / "var" / "audit-refused.log"
    big = json.dumps({"time": "2026-01-01T00:00:00Z", "node": "node2", "remote": "x" * 5000})
    refused.write_text(big + "\n")
    rc, out, err = fake.havirt("store", "migrate", "--to", "files")
    assert rc == 0, err
    assert f"#   the last 1 audit entry from {refused} (etcd refused them: too large for it)" in out, out
    assert "2 audit entries" in out and refused.exists()

    rc, out, err = fake.havirt("--yes", "store", "migrate", "--to", "files")
    assert rc == 0, err
    assert "the 1 audit entry etcd had refused are in the audit log now" in out, out
    assert not refused.exists()
    (aside,) = (fake.home / "var").glob("moved-*/audit-refused.log")
    assert aside.read_text() == big + "\n"
    assert (fake.home / "var" / "audit.log").read_text().splitlines()[-1] == big
    fake.write_config(store={**fake.config["store"], "backend": "files"})
    rc, out, err = fake.havirt("-f", "json", "log")
    assert rc == 0 and [x["remote"] for x in json.loads(out)][-1] == "x" * 5000


def test_unreadable_refused_entries_stop_the_move(fake, etcd, tmp_path):
    lived_in(fake, tmp_path)
    fake.write_config(store={"endpoints": [etcd.url], "prefix": etcd.prefix})
    assert fake.havirt("--yes", "store", "migrate", "--to", "etcd")[0] == 0
    fake.write_config(store={**fake.config["store"], "backend": "etcd"})
    refused = fake.home / "var" / "audit-refused.log"
    refused.symlink_to(tmp_path / "elsewhere")
    keys = etcd_keys(etcd)
    rc, out, err = fake.havirt("--yes", "store", "migrate", "--to", "files")
    assert rc == 2 and err.splitlines()[0].startswith("facts from etcd"), (rc, err)
    assert err.splitlines()[1:] == [f"havirt: {refused}: the audit entries etcd refused cannot be read "
                                    "(it is a symbolic link)"], err
    assert etcd_keys(etcd) == keys and not (fake.home / "var" / "state.yaml").exists()
