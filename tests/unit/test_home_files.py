"""The files havirt writes in its home: never through a link, a clear line when
they cannot be written or read, an audit log that never loses what happened,
and a home that cannot silently be the wrong one.

havirt runs as root in a home that may be shared: whoever can write there
must not be able to make root overwrite another file.
"""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from caps import permissions_apply
from fakes import home_snapshot, is_scan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def victim(tmp_path):
    """A file elsewhere that a link in the home points at: it must never change."""
    p = tmp_path / "elsewhere" / "precious"
    p.parent.mkdir()
    p.write_text("precious\n")
    os.chmod(p, 0o644)
    return p


def untouched(victim):
    st = victim.stat()
    return victim.read_text() == "precious\n" and stat.S_IMODE(st.st_mode) == 0o644


def one_line(rc, err, code, fragment):
    assert rc == code, err
    said_once(err, fragment)


def said_once(err, fragment):
    assert err.startswith("havirt: ") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert fragment in err, err


def cluster(fake):
    a = fake.node("node1")
    fake.conf("db1", memory_mib=64)
    a.add("db1", memory_mib=64)
    return a


# -- 2. nothing is written through a link ------------------------------------------

def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(fake, victim):
    cluster(fake)
    (fake.home / "var" / "havirt.lock").symlink_to(victim)
    before = home_snapshot(fake.home)
    rc, out, err = fake.havirt("node", "set", "node1", "--memory-cap", "100")
    one_line(rc, err, 2, "havirt.lock: cannot open the lock: it is a symbolic link")
    assert untouched(victim) and home_snapshot(fake.home) == before


def test_a_lock_file_hard_linked_to_another_file_is_refused(fake, victim):
    cluster(fake)
    os.link(victim, fake.home / "var" / "havirt.lock")
    rc, out, err = fake.havirt("node", "set", "node1", "--memory-cap", "100")
    one_line(rc, err, 2, "havirt.lock: cannot use the lock: it has 2 names (a hard link)")
    assert untouched(victim)


def test_an_audit_log_that_is_a_link_is_refused_before_any_step(fake, victim):
    a = cluster(fake)
    (fake.home / "var" / "audit.log").symlink_to(victim)
    _, err = fake.refused("--yes", "domain", "destroy", "db1", code=2)
    said_once(err, "audit.log: cannot open the audit log: it is a symbolic link")
    assert "nothing was done" in err
    assert untouched(victim) and "db1" in a.domains
    assert all(is_scan(c) for _, c in fake.calls)


def test_an_audit_log_that_is_a_fifo_never_hangs_havirt(fake):
    a = cluster(fake)
    os.mkfifo(fake.home / "var" / "audit.log")
    _, err = fake.refused("--yes", "domain", "destroy", "db1", code=2)
    said_once(err, "audit.log: cannot")
    assert "db1" in a.domains


def test_import_never_writes_through_a_link_planted_in_conf(fake, victim):
    from conftest import domain_xml
    a = fake.node("node1")
    a.xml["web1"] = domain_xml("web1")
    conf = fake.home / "conf"
    for planted in ("web1.xml.tmp", ".web1.xml.tmp", "web1.tmp"):
        (conf / planted).symlink_to(victim)
    rc, out, err = fake.havirt("domain", "import", "web1", "--from", "node1")
    assert rc == 0, err
    assert untouched(victim)
    assert (conf / "web1.xml").read_text() == domain_xml("web1")
    # conf/NAME.xml itself a link: replaced by a file, never followed
    a.xml["db1"] = domain_xml("db1")
    (conf / "db1.xml").symlink_to(victim)
    rc, out, err = fake.havirt("domain", "import", "db1", "--from", "node1", "--force")
    assert rc == 0, err
    assert untouched(victim)
    assert not (conf / "db1.xml").is_symlink() and "<name>db1</name>" in (conf / "db1.xml").read_text()


def test_a_state_file_that_is_a_link_is_replaced_never_followed(fake, victim):
    cluster(fake)
    state = fake.state_file
    victim.write_text(state.read_text())
    os.chmod(victim, 0o644)
    expected = victim.read_text()
    state.unlink()
    state.symlink_to(victim)
    rc, out, err = fake.havirt("node", "set", "node1", "--memory-cap", "100")
    assert rc == 0, err
    assert victim.read_text() == expected and not state.is_symlink()
    assert fake.state().nodes["node1"].memory_cap_mib == 100


@pytest.mark.parametrize("which", ["var", "conf"])
def test_var_or_conf_linked_by_another_user_is_refused(fake, tmp_path, which):
    cluster(fake)
    real = fake.home / which
    moved = tmp_path / f"moved-{which}"
    real.rename(moved)
    real.symlink_to(moved)
    os.lchown(real, 1000, 1000)
    before = home_snapshot(fake.home)                           # read through the link
    assert before["state"] and before["conf"]
    rc, out, err = fake.havirt("node", "set", "node1", "--memory-cap", "100")   # would write
    one_line(rc, err, 2, f"{real} is a symbolic link (to {moved}) made by uid 1000")
    assert home_snapshot(fake.home) == before
    # the same link made by root (the admin's own choice) is followed
    os.lchown(real, 0, 0)
    rc, out, err = fake.havirt("node", "list")
    assert rc == 0 and "node1" in out, err


def test_a_home_linked_by_another_user_is_refused(fake, tmp_path):
    cluster(fake)
    link = tmp_path / "home-link"
    link.symlink_to(fake.home)
    os.lchown(link, 1000, 1000)
    fake.home = link
    rc, out, err = fake.havirt("node", "list")
    one_line(rc, err, 2, "home-link is a symbolic link")


# -- 3. files that cannot be written or read: one line, exit 2, nothing changed ------

def var_read_only(var):
    os.chmod(var, 0o500)


def lock_read_only(var):
    (var / "havirt.lock").write_text("")
    os.chmod(var / "havirt.lock", 0o400)


def state_not_writable(var):
    (var / "havirt.lock").write_text("")      # the lock can be taken; the state not written
    os.chmod(var / "havirt.lock", 0o600)
    os.chmod(var, 0o500)


@pytest.mark.parametrize("setup, fragment", [
    (var_read_only, "havirt.lock: cannot open the lock: Permission denied"),
    (lock_read_only, "havirt.lock: cannot open the lock: Permission denied"),
    (state_not_writable, "state.yaml: cannot write the state: Permission denied"),
])
def test_var_lock_or_state_not_writable(fake, setup, fragment):
    cluster(fake)
    setup(fake.home / "var")
    before = home_snapshot(fake.home)
    with permissions_apply():
        rc, out, err = fake.havirt("node", "set", "node1", "--memory-cap", "100")
    one_line(rc, err, 2, fragment)
    assert home_snapshot(fake.home) == before


def test_an_unreadable_conf_file_is_listed_as_a_problem_and_refused_by_start(fake):
    a = cluster(fake)
    fake.conf("web1")
    os.chmod(fake.home / "conf" / "web1.xml", 0)
    with permissions_apply():
        rc, out, err = fake.havirt("-f", "tsv", "domain", "list")
        assert rc == 0, err
        assert "web1.xml: cannot read: Permission denied" in err and err.count("\n") == 1
        assert [line.split("\t")[0] for line in out.splitlines()[1:]] == ["db1", "web1"]
        _, err = fake.refused("--yes", "domain", "start", "web1", "node1", code=2)
    said_once(err, "web1.xml: cannot read: Permission denied")
    assert "web1" not in a.domains


def test_an_unreadable_conf_folder_is_said_and_the_scan_still_reports(fake):
    a = cluster(fake)
    b = fake.node("node2")
    a.add("web1")
    b.add("web1")
    os.chmod(fake.home / "conf", 0)
    with permissions_apply():
        rc, out, err = fake.havirt("domain", "list")
        one_line(rc, err, 2, "cannot read conf/: Permission denied")
        assert "(none)" not in out
        rc, out, err = fake.havirt("-q", "node", "scan")
    assert rc == 1
    assert "CRITICAL duplicate web1" in out
    assert "ERROR conf-unreadable" in out and "no-xml" not in out


def test_log_with_an_audit_log_that_is_a_folder_or_not_utf8(fake):
    cluster(fake)
    log = fake.home / "var" / "audit.log"
    log.mkdir()
    rc, out, err = fake.havirt("log")
    one_line(rc, err, 2, "audit.log: cannot read the audit log: Is a directory")
    log.rmdir()
    log.write_bytes(b'{"time": "t", "outcome": "ok"}\n\xff\xfe garbage \x80\n')
    rc, out, err = fake.havirt("-f", "json", "log")
    assert rc == 0, err
    import json
    assert json.loads(out) == [{"time": "t", "outcome": "ok"}, {"outcome": "(unreadable line 2)"}]


# -- 5. the audit log: checked before any step, a later failure never loses what happened

def test_an_audit_log_that_cannot_be_written_stops_a_destroy_before_it_starts(fake):
    a = cluster(fake)
    (fake.home / "var" / "audit.log").mkdir()
    _, err = fake.refused("--yes", "domain", "destroy", "db1", code=2)
    said_once(err, "audit.log: cannot open the audit log: Is a directory; nothing was done")
    assert "db1" in a.domains
    assert all(is_scan(c) for _, c in fake.calls)


def test_an_audit_write_failing_after_the_step_still_verifies_and_records(fake):
    a = cluster(fake)
    log = fake.home / "var" / "audit.log"
    made = fake.factory

    def factory(app):
        runner = made(app)
        run = runner.run

        def run_and_break_the_log(node, command, *args, **kw):
            result = run(node, command, *args, **kw)
            if command.op == "destroy":      # the log goes away while the step runs
                log.unlink(missing_ok=True)
                log.mkdir()
            return result
        runner.run = run_and_break_the_log
        return runner
    fake.factory = factory
    rc, out, err = fake.havirt("--yes", "domain", "destroy", "db1")
    assert rc == 1, err
    assert "db1" not in a.domains
    rec = fake.state().domains["db1"]
    assert rec.node is None and rec.state == "shut off"        # verified by a scan and recorded
    assert "db1 is off" in out
    assert err.count("\n") == 1 and "could not write 1 entry of the audit log" in err
    assert "virsh -c qemu:///system destroy db1" in err and "Traceback" not in err


# -- 7. cron is never silently blind --------------------------------------------------

@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_a_scan_with_no_nodes_says_so(fake, quiet):
    rc, out, err = fake.havirt(*quiet, "node", "scan")
    one_line(rc, err, 2, f"no nodes in the home {fake.home}: nothing to scan")
    assert out == ""


def test_an_empty_home_option_is_an_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HAVIRT_HOME"}
    for extra in ({}, {"HAVIRT_HOME": str(tmp_path)}):
        p = subprocess.run([sys.executable, str(ROOT / "havirt.py"), "--home", "", "node", "list"],
                           capture_output=True, text=True, env={**env, **extra}, cwd=tmp_path)
        assert p.returncode == 2 and p.stdout == "", p
        assert p.stderr == "havirt: --home is empty: give the folder of the havirt home\n"


def test_a_folder_another_havirt_makes_at_the_same_moment_is_taken(tmp_path, monkeypatch):
    """Two commands in a fresh home (two node adds at once): both find var/
    missing, one makes it first; the other's mkdir fails with EEXIST, and it
    goes on with the folder, checked like any. A file there is still refused."""
    from havirt.errors import HomeError
    from havirt.store import files
    real_mkdir = os.mkdir

    def racing(made_by_other):
        def mkdir(path, mode=0o777):
            made_by_other(path)
            return real_mkdir(path, mode)      # EEXIST: the other one was first
        return mkdir
    top = tmp_path / "home"
    top.mkdir()
    monkeypatch.setattr(files.os, "mkdir", racing(lambda p: real_mkdir(p, 0o750)))
    assert files.writable_folder(top / "var", top) == top / "var"
    assert (top / "var").is_dir()
    monkeypatch.setattr(files.os, "mkdir", racing(lambda p: Path(p).write_text("")))
    with pytest.raises(HomeError, match="is not a folder"):
        files.writable_folder(top / "conf", top)
