"""The commands of snapshots and backups, written out by hand; run by sh
with the real qemu-img (snapshots in an image, read back by havirt's image
reader) and with a stand-in for virsh (the backup job and its wait); the
snapshot name rule."""

import json
import shlex
import subprocess

import pytest
from facts import cfg

from havirt.errors import ParseError, UsageError
from havirt.names import check_snapshot_name
from havirt.parse.images import SnapshotFact, parse_images
from havirt.remote import commands as remote
from havirt.remote import snapshots as snap_remote

V = "virsh -c qemu:///system"


@pytest.mark.parametrize("command, text", [
    (snap_remote.snapshot_live(cfg(), "web1", "before-upgrade"),
     f"{V} snapshot-create-as --domain web1 --name before-upgrade --atomic --no-metadata"),
    (snap_remote.image_snapshot("create", "/srv/p q/a.qcow2", "s1"), "qemu-img snapshot -c s1 '/srv/p q/a.qcow2'"),
    (snap_remote.image_snapshot("revert", "/srv/a.qcow2", "s1"), "qemu-img snapshot -a s1 /srv/a.qcow2"),
    (snap_remote.image_snapshot("delete", "/srv/a.qcow2", "s1"), "qemu-img snapshot -d s1 /srv/a.qcow2"),
    (snap_remote.delete_live(cfg(), "web1", "s1"),
     f"out=$({V} qemu-monitor-command --domain web1 --hmp 'delvm s1') || exit 1; "
     "if [ -n \"$(printf '%s' \"$out\" | tr -d '[:space:]')\" ]; then printf '%s\\n' \"$out\" >&2; exit 1; fi"),
    (snap_remote.write_new_file("/b/c.xml", "<a b=\"it's\"/>\n"),
     "[ ! -e /b/c.xml ] && [ ! -L /b/c.xml ] || { echo /b/c.xml exists: not overwritten >&2; exit 1; }; "
     "( set -C; printf '%s' '<a b=\"it'\"'\"'s\"/>\n' > /b/c.xml ) || exit 1"),
])
def test_command_text(command, text):
    assert command.text() == text
    if command.script is None:
        assert shlex.split(text) == list(command.argv)


def test_the_backup_script():
    xml = '<domainbackup mode="push">\n</domainbackup>'
    assert snap_remote.backup_live(cfg(), "web1", xml, ["/b/w-1.qcow2"], 600).text() == (
        "[ ! -e /b/w-1.qcow2 ] && [ ! -L /b/w-1.qcow2 ] || { echo /b/w-1.qcow2 exists: not overwritten >&2; "
        "exit 1; }\n"
        f"printf '%s\\n' '{xml}' | {V} backup-begin --domain web1 /dev/stdin || exit 1\n"
        "fail() { printf '%s\\n' \"$1\" >&2; rm -f /b/w-1.qcow2; exit \"$2\"; }\n"
        "end=$(( $(date +%s) + 600 ))\n"
        f"while s=$({V} domjobinfo --domain web1 2>&1); do\n"
        "  printf '%s\\n' \"$s\" | grep -q '^Job type: *None' && break\n"
        f"  if [ \"$(date +%s)\" -ge \"$end\" ]; then {V} domjobabort --domain web1; "
        "fail 'the backup did not end within 600 s: aborted' 3; fi\n"
        "  sleep 1\n"
        "done\n"
        f"s=$({V} domjobinfo --domain web1 --completed 2>&1)\n"
        "printf '%s\\n' \"$s\" | grep -q '^Job type: *Completed' || fail \"$(printf '%s' \"$s\" | tr '\\n' ' ')\" 1\n")


@pytest.mark.parametrize("name", ["s1", "before-upgrade", "a.b_c", "X" * 64])
def test_valid_snapshot_names(name):
    assert check_snapshot_name(name) == name


@pytest.mark.parametrize("name", ["", "1", "42", "-x", ".a", "_a", "a b", "a..b", "a/b", "x" * 65, "é",
                                  "a;b", "a'b", "s1\n", None])
def test_invalid_snapshot_names(name):
    with pytest.raises(UsageError) as e:
        check_snapshot_name(name)
    assert str(e.value).startswith("invalid snapshot name ") and "\n" not in str(e.value)


def sh(command, **kw):
    return subprocess.run(["sh", "-c", command.text()], capture_output=True, text=True, timeout=60, **kw)


def test_snapshots_with_the_real_qemu_img_read_back_by_the_image_reader(tmp_path):
    image = str(tmp_path / "d 1.qcow2")
    assert sh(remote.create_image(image, 64)).returncode == 0
    for name in ("s1", "s2"):
        assert sh(snap_remote.image_snapshot("create", image, name)).returncode == 0
    assert sh(snap_remote.image_snapshot("delete", image, "s1")).returncode == 0
    assert sh(snap_remote.image_snapshot("revert", image, "s2")).returncode == 0
    gone = sh(snap_remote.image_snapshot("revert", image, "s1"))
    assert gone.returncode == 1 and "Could not apply snapshot 's1'" in gone.stderr
    fact = parse_images(sh(remote.images((), [image])).stdout, "here")[image]
    (s2,) = fact.snapshots
    assert (s2.name, s2.id, s2.vm_state_size) == ("s2", "2", 0) and s2.date > 1_600_000_000


def test_the_image_reader_refuses_snapshots_it_does_not_understand():
    good = [{"name": "s1", "id": "1", "date-sec": 5, "vm-state-size": 7}]
    fact = parse_images("@@image 1\n/a.qcow2\nfile\n" + json.dumps([{"format": "qcow2", "snapshots": good}]),
                        "n1")["/a.qcow2"]
    assert fact.snapshots == (SnapshotFact("s1", "1", 5, 7),)
    for bad in ({"name": "s1"}, "s1", [{"id": "1"}], [{"name": 1, "id": "1"}]):
        with pytest.raises(ParseError, match="cannot parse the snapshots of /a.qcow2 on n1"):
            parse_images("@@image 1\n/a.qcow2\nfile\n" + json.dumps([{"format": "qcow2", "snapshots": bad}]),
                         "n1")


STAND_IN = """#!/bin/sh
# a stand-in for virsh: the backup job of the test, in the folder $STATE
shift 2                       # -c URI
case "$1" in
backup-begin) cat > "$STATE/xml"; for f in $TARGETS; do echo data > "$f"; done; echo Backup started ;;
domjobinfo)
    if [ "$4" = --completed ]; then printf 'Job type:         %s\\nOperation:        Backup\\n' "$RESULT"
    elif [ -e "$STATE/polled" ] && [ "$RESULT" != Never ]; then echo 'Job type:         None'
    else touch "$STATE/polled"; echo 'Job type:         Unbounded'; fi ;;
domjobabort) touch "$STATE/aborted" ;;
esac
"""


@pytest.mark.parametrize("result, code", [("Completed", 0), ("Failed", 1), ("Never", 3)])
def test_the_backup_script_waits_for_the_job(tmp_path, result, code):
    virsh = tmp_path / "virsh"
    virsh.write_text(STAND_IN)
    virsh.chmod(0o755)
    targets = [str(tmp_path / "w-1.qcow2"), str(tmp_path / "w 2.qcow2")]
    seconds = 1 if result == "Never" else 30
    command = snap_remote.backup_live(cfg(virsh_command=str(virsh)), "web1", "<x a='1'/>", targets, seconds)
    (tmp_path / "w 2.qcow2").write_text("not the job's")      # said to exist: checked first
    bad = sh(command, env={"PATH": "/usr/bin:/bin", "STATE": str(tmp_path), "RESULT": result})
    assert bad.returncode == 1 and bad.stderr == f"{targets[1]} exists: not overwritten\n"
    assert not (tmp_path / "xml").exists() and (tmp_path / "w 2.qcow2").read_text() == "not the job's"
    (tmp_path / "w 2.qcow2").unlink()
    env = {"PATH": "/usr/bin:/bin", "STATE": str(tmp_path), "RESULT": result, "TARGETS": targets[0]}
    p = sh(command, env=env)
    assert p.returncode == code, p.stderr
    assert (tmp_path / "xml").read_text() == "<x a='1'/>\n"
    assert (tmp_path / "w-1.qcow2").exists() == (code == 0)
    assert (tmp_path / "aborted").exists() == (code == 3)
    if code == 1:
        assert p.stderr == "Job type:         Failed Operation:        Backup\n"
    if code == 3:
        assert p.stderr == "the backup did not end within 1 s: aborted\n"
    if code == 0:
        again = sh(command, env=env)
        assert again.returncode == 1 and again.stderr == f"{targets[0]} exists: not overwritten\n"


def test_the_definition_is_written_once(tmp_path):
    path = str(tmp_path / "c.xml")
    text = "<domain>\n  <name>it's</name>\n</domain>\n"
    assert sh(snap_remote.write_new_file(path, text)).returncode == 0
    assert (tmp_path / "c.xml").read_text() == text
    again = sh(snap_remote.write_new_file(path, "other"))
    assert again.returncode == 1 and (tmp_path / "c.xml").read_text() == text
