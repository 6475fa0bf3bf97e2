"""Inputs that would never end, or take minutes: a FIFO or a device where a
file is read, a file of gigabytes, a config.yaml of megabytes (an editor
that leaves such a file: test_history_folder.py). Each is one
line and exit 2 within a second or two, nothing changed (the guarded
reader: plain files only, a size limit per kind of file, checked before
anything is parsed)."""

import os

import pytest
from conftest import domain_xml
from fakes import refused


def base(fake):
    fake.node("node1")
    fake.conf("web1")


def fifo(tmp_path):
    path = tmp_path / "some.fifo"
    os.mkfifo(path)
    return str(path)


def sparse(tmp_path, size=1 << 30):
    """A file of `size` bytes that costs nothing on disk, whose XML starts well."""
    path = tmp_path / "huge.xml"
    with open(path, "wb") as f:
        f.write(domain_xml("web2").encode())
        f.truncate(size)
    return str(path)


@pytest.mark.parametrize("source, fragment", [
    (fifo, "some.fifo: cannot read: not a plain file"),
    (lambda tmp_path: "/dev/zero", "/dev/zero: cannot read: not a plain file"),
    (sparse, "huge.xml: cannot read: larger than 10 MiB"),
])
def test_define_from_a_file_that_never_ends(fake, tmp_path, source, fragment):
    base(fake)
    refused(fake, ["domain", "define", "web2", "--file", source(tmp_path)], 2, fragment, seconds=2)


def test_a_config_of_megabytes_is_refused_before_it_is_parsed(fake):
    base(fake)
    (fake.home / "config.yaml").write_text("fence: [" + ",".join(["1"] * (2 << 20)) + "]\n")
    refused(fake, ["node", "list"], 2, "config.yaml: cannot read: larger than 256 KiB", seconds=2)


def test_a_conf_file_of_a_gigabyte_is_listed_as_a_problem(fake, tmp_path):
    base(fake)
    os.rename(sparse(tmp_path), fake.home / "conf" / "web2.xml")
    refused(fake, ["domain", "start", "web2", "node1"], 2, "web2.xml: cannot read: larger than 10 MiB",
            seconds=2)
