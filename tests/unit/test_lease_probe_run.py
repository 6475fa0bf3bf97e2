"""The scan's lease probe (remote.LEASE_PROBE), run here by sh and by bash
against files in a temporary folder: its /etc/libvirt, /run and /proc
become folders of the test (the only change made to its text).

The probe reads qemu.conf's lock_manager and qemu-lockd.conf's
file_lockspace_dir and auto_disk_leases with the shell itself, from one
grep of both files; what it reads must be what the reading it replaced read
(sed, tail, sed for each setting: `sed_setting` below, run on the same files).
"""

import os
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from havirt.parse.leases import parse_leases
from havirt.remote import commands as remote

SHELLS = [s for s in ("sh", "bash") if shutil.which(s)]

# the reading before: one sed, tail and sed per setting
SED_SETTING = r"""sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$2" 2>/dev/null | tail -n 1 | sed 's/[[:space:]]*#.*$//; s/^"//; s/"[[:space:]]*$//'"""


@pytest.fixture
def node(tmp_path):
    root = tmp_path
    for d in ("etc", "run/libvirt", "proc", "locks"):
        (root / d).mkdir(parents=True)

    def probe(shell="sh", name="node1", hostname="host1"):
        text = remote.lease_probe(name)
        for real, here in (("/etc/libvirt/", f"{root}/etc/"), ("/run/", f"{root}/run/"),
                           ("/proc/", f"{root}/proc/")):
            assert real in text
            text = text.replace(real, here)
        p = subprocess.run([shell, "-c", f"h={hostname}\n{text}"], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0 and p.stderr == "", p.stderr
        assert p.stdout.startswith("@@leases\n")
        return p.stdout.split("\n", 1)[1]

    def values(out):
        return dict(line.split("=", 1) for line in out.splitlines() if not line.startswith("seen="))

    def sed(key, conf):
        return subprocess.run(["sh", "-c", SED_SETTING, "sh", key, str(root / "etc" / conf)],
                              capture_output=True, text=True, timeout=30).stdout.rstrip("\n")

    return SimpleNamespace(root=root, probe=probe, values=values, sed=sed,
                           qemu=root / "etc/qemu.conf", lockd=root / "etc/qemu-lockd.conf")


# lines as admins write them: spaces, tabs, quotes, comments, a last line without newline
QEMU_CONFS = [
    'lock_manager = "lockd"\n',
    '# lock_manager = "lockd"\n',
    '#lock_manager = "sanlock"\n  lock_manager="lockd"   # leases\n',
    'lock_manager = "sanlock"\nlock_manager = "lockd"',
    '\tlock_manager\t=\tlockd\t\n',
    'lock_managers = "lockd"\nlock_manager_x = 1\n',
    'lock_manager = "lockd" "x"  \n',
    'lock_manager =\n',
    '',
]
LOCKD_CONFS = [
    'file_lockspace_dir = "/srv/locks"\nauto_disk_leases = 0\n',
    'file_lockspace_dir = "/srv/a dir"\t\n\tauto_disk_leases=0 # off\n'
    'file_lockspace_dir   =   /x/y#z  \nauto_disk_leases = "1"  \n',
    '#file_lockspace_dir = "/srv/locks"\nauto_disk_leases = "a" "b"  ',
    'file_lockspace_dir="/srv/locks"#end\nauto_disk_leases=1',
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("qemu", QEMU_CONFS)
@pytest.mark.parametrize("lockd", LOCKD_CONFS)
def test_the_settings_read_as_sed_read_them(node, shell, qemu, lockd):
    node.qemu.write_text(qemu)
    node.lockd.write_text(lockd)
    v = node.values(node.probe(shell))
    assert v["lock_manager"] == node.sed("lock_manager", "qemu.conf")
    assert v["lockspace"] == node.sed("file_lockspace_dir", "qemu-lockd.conf")
    assert v["auto_disk_leases"] == node.sed("auto_disk_leases", "qemu-lockd.conf")


@pytest.mark.parametrize("shell", SHELLS)
def test_no_files_no_settings(node, shell):
    out = node.probe(shell)
    assert out == "lock_manager=\nlockspace=\nauto_disk_leases=\nvirtlockd=no\n"


@pytest.mark.parametrize("shell", SHELLS)
def test_the_marker_is_written_once_and_the_others_are_seen(node, shell):
    locks = node.root / "locks"
    node.lockd.write_text(f'file_lockspace_dir = "{locks}"\n')
    (locks / ".havirt-lease-node2").write_text("havirt-lease-mark node2 host2\n")
    out = node.probe(shell)
    assert "marked=yes\n" in out
    mark = locks / ".havirt-lease-node1"
    assert mark.read_text() == "havirt-lease-mark node1 host1\n"
    assert [ln for ln in out.splitlines() if ln.startswith("seen=")] == [
        "seen=havirt-lease-mark node1 host1", "seen=havirt-lease-mark node2 host2"]
    before = os.stat(mark)
    node.probe(shell)                                   # right: left as it is
    after = os.stat(mark)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    node.probe(shell, hostname="host9")                 # wrong: written again
    assert mark.read_text() == "havirt-lease-mark node1 host9\n"
    assert os.stat(mark).st_ino != before.st_ino
    assert sorted(p.name for p in locks.iterdir()) == [".havirt-lease-node1", ".havirt-lease-node2"]


@pytest.mark.parametrize("shell", SHELLS)
def test_a_lockspace_it_cannot_write(node, shell):
    # sysfs: a folder in which no one, root included, creates a file (a folder
    # of mode 0555 would not do: the tests run as root in CI)
    node.lockd.write_text("file_lockspace_dir = /sys\n")
    out = node.probe(shell)
    assert "marked=no\n" in out and "seen=" not in out
    assert not os.path.exists("/sys/.havirt-lease-node1")


@pytest.mark.parametrize("shell", SHELLS)
def test_the_daemon_memory_map_and_the_times(node, shell):
    node.lockd.write_text("auto_disk_leases = 1\n")
    os.utime(node.lockd, (1000, 1000))
    pid = node.root / "run/libvirtd.pid"
    pid.write_text("4242\n")
    os.utime(pid, (2000, 2000))
    (node.root / "proc/4242").mkdir()
    maps = node.root / "proc/4242/maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libvirt/lock-driver/lockd.so\n")
    v = node.values(node.probe(shell))
    assert (v["lockd_loaded"], v["lockd_conf_newer"]) == ("yes", "no")
    os.utime(node.lockd, (2000, 2000.5))               # the same second, later: changed after
    assert node.values(node.probe(shell))["lockd_conf_newer"] == "yes"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libvirt/lock-driver/sanlock.so\n")
    node.lockd.write_text("# lock-driver/lockd.so\n")   # named in a file, not mapped
    os.utime(node.lockd, (1000, 1000))
    v = node.values(node.probe(shell))
    assert (v["lockd_loaded"], v["lockd_conf_newer"]) == ("no", "no")
    node.lockd.unlink()
    v = node.values(node.probe(shell))
    assert (v["lockd_loaded"], v["lockd_conf_newer"]) == ("no", "no")


@pytest.mark.parametrize("shell", SHELLS)
def test_a_pid_file_of_no_process_or_none(node, shell):
    (node.root / "run/virtqemud.pid").write_text("4343\n")       # no such process here
    assert "lockd_loaded" not in node.values(node.probe(shell))
    (node.root / "proc/4343").mkdir()
    (node.root / "proc/4343/maps").write_text("")
    assert node.values(node.probe(shell))["lockd_loaded"] == "no"


def test_what_it_prints_is_what_the_parser_reads(node):
    locks = node.root / "locks"
    node.qemu.write_text('lock_manager = "lockd"\n')
    node.lockd.write_text(f'file_lockspace_dir = "{locks}"\n')
    (node.root / "run/libvirt/virtlockd-sock").write_text("")   # a file, not a socket: "no"
    facts = SimpleNamespace(lease_marks={})
    parse_leases(node.probe(), facts)
    assert facts.lockspace == str(locks) and facts.lease_marks == {"node1": "host1"}
    assert facts.lease_problem == "cannot tell which lock manager libvirtd uses (no /run/libvirtd.pid)"
