import re
import shlex
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from fake_storage import FakeStorage  # noqa: E402
from fakes import FakeNode, FakeRunner, is_scan  # noqa: E402

from havirt.cli import run  # noqa: E402
from havirt.remote import commands as remote  # noqa: E402
from havirt.store.state import NodeRecord, State, load_state, save_state  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"


def domain_xml(name, memory_mib=32, vcpus=1, disks=()):
    disk_xml = "".join(
        f"<disk type='file' device='disk'><source file='{d}'/><target dev='vd{chr(97 + i)}'/></disk>"
        for i, d in enumerate(disks))
    return (f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory>"
            f"<vcpu>{vcpus}</vcpu><os><type arch='x86_64'>hvm</type></os>"
            f"<devices>{disk_xml}</devices></domain>\n")


def uuid_of(xml) -> str | None:
    """The <uuid> of a domain definition (bytes or text); None: it has none."""
    import xml.etree.ElementTree as ET
    return (ET.fromstring(xml).findtext("uuid") or "").strip() or None


def first_cluster(keep, seed, **kw):
    """The first of balance_reference.random_cluster(seed), (seed + 1000), (seed + 2000)...
    for which keep(nodes, doms) holds: a property checked on a cluster that
    gives it nothing to check cannot fail."""
    from balance_reference import random_cluster
    for draw in range(20):
        nodes, doms = random_cluster(seed + 1000 * draw, **kw)
        if keep(nodes, doms):
            return nodes, doms
    raise AssertionError(f"no random cluster from seed {seed} suits the test")


def reads_only(cfg, command):
    """The scan session, or import's `dumpxml --inactive` (of every domain or of
    the domains named): the commands that change nothing on a node."""
    if is_scan(command):
        return True
    named = [shlex.split(q)[0] for q in re.findall(r"printf '@@xml %s\\n' (\S+); ", command)]
    return command in (remote.dump_inactive(cfg).text(), remote.dump_inactive(cfg, named).text())


class FakeCluster:
    """A havirt home in tmp_path and a fake cluster behind a fake runner."""

    def __init__(self, tmp_path, capsys):
        self.home = tmp_path / "home"
        (self.home / "conf").mkdir(parents=True)
        (self.home / "var").mkdir()
        self.config = {"reserve": {"memory_mib": 1024, "vcpu_ratio": 4.0}, "lock_timeout": 2}
        self.write_config()
        self.nodes: dict[str, FakeNode] = {}
        self.records: dict[str, NodeRecord] = {}
        self.capsys = capsys
        self.runners: list[FakeRunner] = []
        self.lockspaces: dict[str, dict[str, str]] = {}   # shared lockspace folders -> files
        self.storage = FakeStorage()                       # pools and images the nodes see

    def leases(self, *names, lockspace="/shared/locks"):
        """Leases in force on these nodes (default: all), in one shared lockspace."""
        self.lockspaces.setdefault(lockspace, {})
        for name in names or self.nodes:
            self.nodes[name].leases, self.nodes[name].lockspace = True, lockspace

    def write_config(self, **extra):
        import yaml
        self.config.update(extra)
        (self.home / "config.yaml").write_text(yaml.safe_dump(self.config))

    def node(self, name, record=True, **kw):
        n = self.nodes[name] = FakeNode(name=name, address=f"10.0.0.{len(self.nodes) + 1}", **kw)
        if record:
            self.records[name] = NodeRecord(name=name, address=n.address, cpus=n.cpus,
                                            memory_mib=n.memory_mib, reachable=True)
            self.save_state()
        return n

    def save_state(self):
        state = self.state() if self.state_file.exists() else State()
        for name, rec in self.records.items():
            state.nodes[name] = rec
        save_state(self.state_file, state)

    @property
    def state_file(self):
        return self.home / "var" / "state.yaml"

    def state(self):
        return load_state(self.state_file)

    def conf(self, name, **kw):
        (self.home / "conf" / f"{name}.xml").write_text(domain_xml(name, **kw))

    real_describe = False
    runner_class = FakeRunner     # a test may give a subclass that changes the cluster as it goes

    def factory(self, app):
        r = self.runner_class(app, self.nodes, real_describe=self.real_describe,
                              lockspaces=self.lockspaces, storage=self.storage)
        self.runners.append(r)
        return r

    @property
    def unexpected(self):
        return [u for r in self.runners for u in r.unexpected]

    @property
    def calls(self):
        return [c for r in self.runners for c in r.calls]

    def changing_calls(self):
        """Every (node, command) the fake received that may change a node: all
        but the read-only ones (see reads_only), oldest first."""
        return [(n, c) for r in self.runners for n, c in r.calls if not reads_only(r.cfg, c)]

    def audit_lines(self):
        """The lines of var/audit.log as bytes (none while it is not a plain file)."""
        p = self.home / "var" / "audit.log"
        return p.read_bytes().splitlines() if p.is_file() else []

    def refused(self, *args, code=3):
        """Run havirt, which must exit `code` without sending any command that
        changes a node and without a new audit entry; returns (out, err)."""
        sent, logged = len(self.changing_calls()), self.audit_lines()
        rc, out, err = self.havirt(*args)
        assert rc == code, (rc, out, err)
        assert self.changing_calls()[sent:] == [], f"sent to a node although it exited {code}"
        assert self.audit_lines() == logged, f"audit entry written although it exited {code}"
        return out, err

    def havirt(self, *args):
        self.capsys.readouterr()
        rc = run(["--home", str(self.home), *args], runner_factory=self.factory)
        out = self.capsys.readouterr()
        return rc, out.out, out.err


@pytest.fixture(autouse=True)
def temp_dir(tmp_path, monkeypatch):
    """tempfile (and a child's $TMPDIR) makes its files in the test's own tmp_path,
    so that a test leaves nothing behind in /tmp."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.fixture
def fake(tmp_path, capsys):
    """A fake cluster; a command havirt sent that the fake did not expect fails
    the test here, whatever exit code the CLI turned it into."""
    cluster = FakeCluster(tmp_path, capsys)
    yield cluster
    assert not cluster.unexpected, "havirt sent unexpected commands:\n" + "\n".join(cluster.unexpected)


@pytest.fixture
def editor(tmp_path, monkeypatch):
    """Set $EDITOR to a script (sh) that changes the file it is given."""
    monkeypatch.delenv("VISUAL", raising=False)

    def use(body: str):
        script = tmp_path / f"editor{len(list(tmp_path.glob('editor*')))}"
        script.write_text(f"#!/bin/sh\nf=\"$1\"\n{body}\n")
        script.chmod(0o755)
        monkeypatch.setenv("EDITOR", str(script))
    return use


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory):
    """One real etcd member for the session (tests/unit/etcd_server.py)."""
    from etcd_server import EtcdServer
    server = EtcdServer(tmp_path_factory.mktemp("etcd")).start()
    yield server
    server.stop()


@pytest.fixture
def etcd(etcd_server, request):
    """The session's etcd, and a prefix of this test's own in it."""
    import re as _re
    etcd_server.prefix = "/t/" + _re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:80]
    return etcd_server


def move_to_etcd(fake, server, lock_ttl=5, **store):
    """The fake's home from now on keeps its facts in `server` (under its
    prefix): the state and conf/ the fake wrote are copied there, then taken
    out of the home, so that whatever a command shows came from etcd."""
    from havirt.store.etcd import EtcdStore
    from havirt.store.storeconfig import StoreConfig
    cfg = {"backend": "etcd", "endpoints": [server.url], "prefix": server.prefix,
           "lock_ttl": lock_ttl, **store}
    target = EtcdStore(StoreConfig(cfg["backend"], cfg["endpoints"], cfg["prefix"],
                                   lock_ttl=cfg["lock_ttl"]))
    with target.locked(5, "the test's seed"):
        target.load_state()
        target.save_state(fake.state() if fake.state_file.exists() else State())
        for xml in sorted((fake.home / "conf").glob("*.xml")):
            target.conf.write(xml.name[:-4], xml.read_text())
            xml.unlink()
    if fake.state_file.exists():
        fake.state_file.unlink()
    fake.write_config(store=cfg)
    return target
