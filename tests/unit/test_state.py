"""var/state.yaml: round trip, atomic 0600 writes, refusals that leave the file alone; the lock."""

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from havirt.errors import HomeError, LockBusy, StateError
from havirt.store.state import DomainRecord, NodeRecord, State, load_state, locked, save_state

ROOT = Path(__file__).resolve().parents[2]


def sample_state():
    s = State()
    s.nodes["node1"] = NodeRecord(name="node1", address="10.0.0.1", user="admin", port=2222,
                                  memory_cap_mib=4096, cpus=8, memory_mib=16384, hostname="n1.lan",
                                  libvirt_version="9.0.0", maintenance=True,
                                  last_scan="2024-01-01T00:00:00Z", reachable=False,
                                  error="connect timed out")
    s.nodes["node2"] = NodeRecord(name="node2", address="node2")
    s.domains["web1"] = DomainRecord(name="web1", node="node1", state="running", memory_mib=512,
                                     vcpus=2, maintenance=True, last_seen="2024-01-01T00:00:00Z",
                                     stale=True, conflict=["node1", "node2"])
    s.domains["db1"] = DomainRecord(name="db1")
    return s


def test_round_trip(tmp_path):
    p = tmp_path / "var" / "state.yaml"
    s = sample_state()
    save_state(p, s)
    back = load_state(p)
    assert back.nodes == s.nodes
    assert back.domains == s.domains
    assert back.updated == s.updated and back.updated.endswith("Z")
    data = yaml.safe_load(p.read_text())
    assert list(data) == ["format", "updated", "nodes", "domains"]
    assert data["format"] == 1
    assert list(data["domains"]) == ["db1", "web1"]          # sorted
    assert "name" not in data["nodes"]["node1"]


def test_missing_file_is_an_empty_state(tmp_path):
    s = load_state(tmp_path / "state.yaml")
    assert s.nodes == {} and s.domains == {} and s.updated is None


def test_write_is_atomic_0600_and_leaves_no_temporary_file(tmp_path):
    p = tmp_path / "state.yaml"
    p.write_text("old")
    os.chmod(p, 0o644)
    save_state(p, sample_state())
    assert sorted(os.listdir(tmp_path)) == ["state.yaml"]
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    save_state(p, State())
    assert sorted(os.listdir(tmp_path)) == ["state.yaml"]
    assert load_state(p).nodes == {}


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    p = tmp_path / "state.yaml"
    save_state(p, sample_state())
    before = p.read_bytes()

    def boom(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(HomeError, match="cannot write the state: No space left on device"):
        save_state(p, State())
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["state.yaml"]


GOOD = "format: 1\nupdated: null\nnodes:\n  node1:\n    address: 10.0.0.1\ndomains: {}\n"


@pytest.mark.parametrize("text, message", [
    ("", r"is empty; remove it to start afresh"),
    ("\n", r"is empty"),
    ("format: 1\nnodes:\n  node1:\n    address: '10.0", r"is not valid YAML \(line \d+\); left untouched"),
    ("format: 1\nnodes: {node1: {address: 10.0.0.1}\n", r"is not valid YAML"),
    ("- node1\n- node2\n", r"is not a mapping; left untouched"),
    ("just text\n", r"is not a mapping"),
    ("format: 99\nnodes: {}\n", r"format 99 is not supported by this havirt \(it reads format 1\); left untouched"),
    ("nodes: {}\n", r"format None is not supported"),
    ("format: 1\nnodes: {}\nextra: 1\n", r"unknown keys extra"),
    ("format: 1\nnodes:\n  node1: {address: a, colour: red}\n", r"nodes node1: unknown keys colour"),
    ("format: 1\ndomains:\n  web1: {node: node1, owner: bob}\n", r"domains web1: unknown keys owner"),
    ("format: 1\nnodes: [node1]\n", r"'nodes' must be a mapping of name to record"),
    ("format: 1\nnodes:\n  node1: 10.0.0.1\n", r"nodes entry 'node1' is not a mapping"),
    ("format: 1\nnodes:\n  node1: {cpus: 4}\n", r"node1"),
    ("format: 1\nnodes:\n  node1: {address: ''}\n", r"invalid address ''"),
])
def test_bad_files_raise_and_are_left_untouched(tmp_path, text, message):
    p = tmp_path / "state.yaml"
    p.write_text(text)
    before = p.read_bytes(), p.stat().st_mtime_ns
    with pytest.raises(StateError, match=message) as e:
        load_state(p)
    assert str(e.value).startswith(str(p))
    assert "\n" not in str(e.value)
    assert e.value.exit_code == 2
    assert (p.read_bytes(), p.stat().st_mtime_ns) == before


def test_good_minimal_file_loads(tmp_path):
    p = tmp_path / "state.yaml"
    p.write_text(GOOD)
    s = load_state(p)
    assert s.nodes["node1"] == NodeRecord(name="node1", address="10.0.0.1")


@pytest.mark.parametrize("text", [
    "",
    "format: 1\nnodes:\n  node1:\n    address: '10.0",
    "[]\n",
    "format: 99\n",
    "format: 1\nnodez: {}\n",
])
def test_cli_node_list_with_bad_state(fake, text):
    fake.state_file.write_text(text)
    before = fake.state_file.read_bytes()
    for args in (("node", "list"), ("node", "scan"), ("domain", "list")):
        rc, out, err = fake.havirt(*args)
        assert rc == 2, (args, out, err)
        assert out == ""
        assert err.startswith(f"havirt: {fake.state_file}") and err.count("\n") == 1, err
        assert "Traceback" not in err
    assert fake.state_file.read_bytes() == before
    assert fake.calls == []


def test_cli_state_with_wrong_value_types_is_a_state_error(fake):
    """A hand-edited value of the wrong type is the state file's fault: exit 2, one line."""
    fake.state_file.write_text("format: 1\nnodes:\n  node1: {address: 10.0.0.1, memory_mib: 8192, "
                               "memory_cap_mib: lots}\ndomains:\n  web1: {node: node1, state: running, "
                               "memory_mib: many}\n")
    before = fake.state_file.read_bytes()
    rc, out, err = fake.havirt("node", "list")
    assert rc == 2, err
    assert err.startswith(f"havirt: {fake.state_file}") and err.count("\n") == 1, err
    assert "internal error" not in err
    assert fake.state_file.read_bytes() == before


# -- the lock --------------------------------------------------------------------------

def test_lock_busy_names_the_holder_thread(tmp_path):
    lock = tmp_path / "var" / "havirt.lock"
    inside, release = threading.Event(), threading.Event()

    def holder():
        with locked(lock, 1, "havirt node scan"):
            inside.set()
            release.wait(5)
    t = threading.Thread(target=holder)
    t.start()
    try:
        assert inside.wait(5)
        start = time.monotonic()
        with pytest.raises(LockBusy) as e:
            with locked(lock, 0.2):
                pytest.fail("got a held lock")
        assert 0.15 < time.monotonic() - start < 2
        msg = str(e.value)
        assert msg.startswith(f"{lock} is held by pid {os.getpid()} (")
        assert "havirt node scan" in msg and msg.endswith("gave up after 0.2 s")
        assert e.value.exit_code == 5
    finally:
        release.set()
        t.join(5)
    # released after the block: a new holder gets it at once
    start = time.monotonic()
    with locked(lock, 5):
        assert f"pid {os.getpid()}" in lock.read_text()
    assert time.monotonic() - start < 2      # not the 5 s it would wait for a held one
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_lock_busy_names_another_process(tmp_path):
    lock = tmp_path / "havirt.lock"
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from pathlib import Path\nfrom havirt.store.state import locked\n"
            "with locked(Path(%r), 5, 'held by test'):\n"
            "    print('ready', flush=True)\n    sys.stdin.readline()\n") % (str(ROOT), str(lock))
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        with pytest.raises(LockBusy, match=rf"is held by pid {p.pid} \(.*held by test\); gave up after 0.2 s"):
            with locked(lock, 0.2):
                pass
    finally:
        p.stdin.write("\n")
        p.stdin.close()
        p.wait(10)
    assert p.returncode == 0
    with locked(lock, 0.2):
        pass


def test_lock_released_when_the_block_raises(tmp_path):
    lock = tmp_path / "havirt.lock"
    with pytest.raises(RuntimeError):
        with locked(lock, 0.2):
            raise RuntimeError("x")
    with locked(lock, 0):
        pass


def test_cli_lock_busy_exit_5(fake):
    fake.node("node1")
    fake.write_config(lock_timeout=0.2)
    before = fake.state_file.read_bytes()
    inside, release = threading.Event(), threading.Event()

    def holder():
        with locked(fake.home / "var" / "havirt.lock", 1, "havirt --yes cluster balance"):
            inside.set()
            release.wait(5)
    t = threading.Thread(target=holder)
    t.start()
    try:
        assert inside.wait(5)
        rc, out, err = fake.havirt("node", "scan")
    finally:
        release.set()
        t.join(5)
    assert rc == 5
    assert out == ""
    assert err.startswith(f"havirt: {fake.home / 'var' / 'havirt.lock'} is held by pid {os.getpid()} (")
    assert "havirt --yes cluster balance" in err and err.count("\n") == 1
    assert fake.calls == []
    assert fake.state_file.read_bytes() == before
