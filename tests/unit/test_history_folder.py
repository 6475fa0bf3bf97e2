"""conf/.history/NAME/: a folder havirt writes into as root, under the rule of
every such folder (a folder, or a link that root or havirt's own user made),
and a record only of changes that happened.

Each command that keeps a previous version (undefine, define --force, edit)
is tried against each way the history can be unusable: one line, exit 2,
nothing changed in the home or elsewhere.
"""

import os
import shutil
from pathlib import Path

import pytest
from caps import permissions_apply
from conftest import domain_xml
from fakes import home_snapshot, refused

NOBODY = 65534


@pytest.fixture
def attacker(tmp_path):
    """A folder of someone else's, where a planted link points."""
    folder = tmp_path / "attacker"
    folder.mkdir()
    return folder


def undefine(fake, tmp_path, editor):
    return ["domain", "undefine", "web1"]


def define(fake, tmp_path, editor):
    src = tmp_path / "new.xml"
    src.write_text(domain_xml("web1", memory_mib=64))
    return ["domain", "define", "web1", "--file", str(src), "--force"]


def edit(fake, tmp_path, editor):
    editor("sed -i 's/>32</>64</' \"$f\"")
    return ["domain", "edit", "web1"]


COMMANDS = [undefine, define, edit]


def cluster(fake):
    fake.node("node1")
    fake.conf("web1")


def history(fake):
    return fake.home / "conf" / ".history"


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("where", [".history", ".history/web1"])
def test_a_history_link_made_by_another_user_is_refused(fake, tmp_path, editor, attacker,
                                                        command, where):
    cluster(fake)
    link = fake.home / "conf" / where
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(attacker)
    os.lchown(link, NOBODY, NOBODY)
    args = command(fake, tmp_path, editor)
    refused(fake, args, 2, f"{link} is a symbolic link (to {attacker}) made by uid {NOBODY}")
    assert list(attacker.iterdir()) == []
    assert (fake.home / "conf" / "web1.xml").read_text() == domain_xml("web1")


def test_a_history_link_made_by_root_is_followed(fake, tmp_path, attacker):
    cluster(fake)
    history(fake).symlink_to(attacker)            # the admin's own choice, as for var/ and conf/
    rc, out, err = fake.havirt("domain", "undefine", "web1")
    assert rc == 0, err
    (kept,) = (attacker / "web1").iterdir()
    assert kept.read_text() == domain_xml("web1") and not (fake.home / "conf" / "web1.xml").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_change_that_cannot_be_written_leaves_no_history_entry(fake, tmp_path, editor, command):
    cluster(fake)
    (history(fake) / "web1").mkdir(parents=True)
    args = command(fake, tmp_path, editor)
    os.chmod(fake.home / "conf", 0o555)             # conf/web1.xml can be neither replaced nor removed
    before = home_snapshot(fake.home)["conf"]
    with permissions_apply():
        rc, out, err = fake.havirt(*args)
    assert rc == 2 and err.count("\n") == 1 and "web1.xml: cannot" in err, err
    assert "Permission denied" in err and "internal error" not in err
    assert home_snapshot(fake.home)["conf"] == before      # (undefine's scan is recorded)
    assert list((history(fake) / "web1").iterdir()) == []
    if command is edit:                                     # the edit itself is not lost
        kept = Path(err.rsplit("(the edit is in ", 1)[1].rstrip(")\n"))
        assert ">64<" in kept.read_text()
        shutil.rmtree(kept.parent)


def a_file(path):
    path.write_text("not a folder\n")


def a_fifo(path):
    os.mkfifo(path)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("where", [".history", ".history/web1"])
@pytest.mark.parametrize("make", [a_file, a_fifo])
def test_a_history_that_is_not_a_folder_is_one_line(fake, tmp_path, editor, command, where, make):
    cluster(fake)
    path = fake.home / "conf" / where
    path.parent.mkdir(exist_ok=True)
    make(path)
    refused(fake, command(fake, tmp_path, editor), 2, f"{path} is not a folder", seconds=2)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("where", ["conf", "conf/.history", "conf/.history/web1"])
def test_a_history_that_cannot_be_written_is_one_line(fake, tmp_path, editor, command, where):
    cluster(fake)
    folder = fake.home / where                        # the first folder written into: nothing below it
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o555)
    with permissions_apply():
        refused(fake, command(fake, tmp_path, editor), 2, "Permission denied", seconds=2)


# -- an editor that takes the copy away, or leaves what never ends ----------------------

@pytest.mark.parametrize("body, fragment", [
    ('rm "$f"; mkfifo "$f"', "web1.xml: cannot read: not a plain file; conf/web1.xml left as it was"),
    ('truncate -s 1G "$f"', "web1.xml: cannot read: larger than 10 MiB, more than havirt reads"),
    ('rm "$f"', "the edited copy is gone; conf/web1.xml left as it was"),
    ('rm "$f"; mkdir "$f"', "web1.xml: is a folder, not a file; conf/web1.xml left as it was"),
    ('rm -r "$(dirname "$f")"', "the edited copy is gone; conf/web1.xml left as it was"),
])
def test_an_editor_that_leaves_no_usable_copy_is_one_line(fake, editor, body, fragment):
    cluster(fake)
    editor(body)
    refused(fake, ["domain", "edit", "web1"], 2, fragment, seconds=2)
