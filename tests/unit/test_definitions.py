"""domain edit / define / undefine: conf/ changes only after the rules pass, history kept."""

import json
from pathlib import Path

import pytest
from conftest import domain_xml
from fakes import home_snapshot

from havirt.errors import DomainXMLError
from havirt.ops.app import App
from havirt.ops.definitions import edit
from havirt.store.home import resolve_home


def history(fake, name="web1"):
    folder = fake.home / "conf" / ".history" / name
    return sorted(folder.iterdir()) if folder.exists() else []


def conf_bytes(fake, name="web1"):
    return (fake.home / "conf" / f"{name}.xml").read_bytes()


def test_a_good_edit_shows_the_change_keeps_the_previous_version(fake, editor):
    fake.conf("web1", memory_mib=512)
    before = conf_bytes(fake)
    editor("sed -i 's/>512</>1024</' \"$f\"")
    rc, out, err = fake.havirt("domain", "edit", "web1")
    assert rc == 0, err
    assert conf_bytes(fake) == before.replace(b">512<", b">1024<")
    (kept,) = history(fake)
    assert kept.read_bytes() == before and kept.name.endswith("-edit.xml")
    lines = out.splitlines()
    assert lines[:2] == ["--- conf/web1.xml (before)", "+++ conf/web1.xml"]
    assert "-<domain type='kvm'><name>web1</name><memory unit='MiB'>512</memory>" in out
    assert "+<domain type='kvm'><name>web1</name><memory unit='MiB'>1024</memory>" in out
    assert lines[-1] == f"saved conf/web1.xml (the previous version is in conf/.history/web1/{kept.name})"
    assert fake.calls == []                                  # conf/ only: no node was asked
    assert "web1" in fake.havirt("domain", "list")[1]


def test_a_broken_edit_without_a_terminal_exits_2_and_leaves_conf_alone(fake, editor, temp_dir):
    fake.conf("web1")
    before = home_snapshot(fake.home)
    editor("printf '<domain><name>web1</name>' > \"$f\"")
    out, err = fake.refused("domain", "edit", "web1", code=2)
    assert out == ""
    assert err.startswith("havirt: the edited web1.xml: not valid XML")
    assert "conf/web1.xml left as it was (the edit is in /" in err and err.count("\n") == 1
    assert home_snapshot(fake.home) == before and history(fake) == []
    kept_edit = Path(err.rsplit("(the edit is in ", 1)[1].rstrip(")\n"))
    assert kept_edit.read_text() == "<domain><name>web1</name>"
    assert kept_edit.parent.parent == temp_dir and kept_edit.parent.name.startswith("havirt-edit-")


@pytest.mark.parametrize("body, code", [("true", 0), ("sed -i 's/>32</>64</' \"$f\"", 0), ("exit 3", 1)])
def test_an_edit_leaves_nothing_in_the_temp_folder(fake, editor, temp_dir, body, code):
    fake.conf("web1")
    editor(f"echo \"$f\" > {temp_dir}/edited-path\n{body}")
    before = sorted(temp_dir.iterdir())
    rc, _, err = fake.havirt("domain", "edit", "web1")
    assert rc == code, err
    edited = Path((temp_dir / "edited-path").read_text().strip())
    assert edited.parent.parent == temp_dir                 # the copy was made in the temp folder given
    (temp_dir / "edited-path").unlink()
    assert sorted(temp_dir.iterdir()) == before


@pytest.mark.parametrize("body, reason", [
    ("sed -i 's/<name>web1</<name>web2</' \"$f\"", "<name> is 'web2', not 'web1'"),
    ("sed -i 's/<memory[^/]*\\/memory>//' \"$f\"", "no <memory>"),
    ("sed -i 's/<vcpu>1</<vcpu>0</' \"$f\"", "<vcpu> must be 1 to 4096"),
    ("echo '<network><name>web1</name></network>' > \"$f\"", "the root element is <network>"),
])
def test_every_rule_of_conf_applies_to_an_edit(fake, editor, body, reason):
    fake.conf("web1")
    before = conf_bytes(fake)
    editor(body)
    _, err = fake.refused("domain", "edit", "web1", code=2)
    assert reason in err, err
    assert conf_bytes(fake) == before


def test_an_unchanged_edit_writes_nothing(fake, editor):
    fake.conf("web1")
    before = home_snapshot(fake.home)
    editor("true")
    rc, out, err = fake.havirt("domain", "edit", "web1")
    assert (rc, out, err) == (0, "conf/web1.xml unchanged: nothing written\n", "")
    assert home_snapshot(fake.home) == before
    assert not (fake.home / "conf" / ".history").exists()


def test_interactively_a_broken_edit_is_offered_again(fake, editor):
    fake.conf("web1", memory_mib=512)
    app = App.create(resolve_home(str(fake.home), None), None)
    passes, asked = [], []

    def open_editor(path):                                   # first broken, then mended
        passes.append(path.read_text())
        if len(passes) == 1:
            path.write_text(passes[0].replace(">512<", ">2048<").replace("</domain>", ""))
        else:
            path.write_text(passes[1] + "</domain>\n")

    def again(reason):
        asked.append(reason)
        return True
    change = edit(app, "web1", open_editor, again)
    assert len(passes) == 2 and "</domain>" not in passes[1]   # the broken copy was reopened
    assert asked and "not valid XML" in asked[0]
    assert change.changed and b">2048<" in conf_bytes(fake)


def test_declining_to_edit_again_raises_the_reason(fake):
    fake.conf("web1")
    before = conf_bytes(fake)
    app = App.create(resolve_home(str(fake.home), None), None)
    with pytest.raises(DomainXMLError) as e:
        edit(app, "web1", lambda p: p.write_text("nope"), lambda reason: False)
    assert "not valid XML" in str(e.value) and e.value.exit_code == 2
    assert conf_bytes(fake) == before


def test_a_file_changed_while_being_edited_is_not_overwritten(fake, editor):
    fake.conf("web1", memory_mib=512)
    other = domain_xml("web1", memory_mib=768)
    editor(f"sed -i 's/>512</>1024</' \"$f\"; printf \"%s\" \"{other}\" > {fake.home}/conf/web1.xml")
    rc, _, err = fake.havirt("domain", "edit", "web1")
    assert rc == 1 and "conf/web1.xml changed while it was being edited: nothing written" in err
    assert conf_bytes(fake).decode() == other and history(fake) == []


def test_an_editor_that_fails_changes_nothing(fake, editor):
    fake.conf("web1")
    before = conf_bytes(fake)
    editor("sed -i 's/>32</>64</' \"$f\"; exit 3")
    rc, _, err = fake.havirt("domain", "edit", "web1")
    assert rc == 1 and "exited with 3; conf/web1.xml left as it was" in err
    assert conf_bytes(fake) == before


def test_a_broken_conf_file_can_be_mended_by_edit(fake, editor):
    (fake.home / "conf" / "web1.xml").write_text("<domain><name>web1</name>")
    editor(f"printf \"%s\" \"{domain_xml('web1')}\" > \"$f\"")
    rc, out, err = fake.havirt("domain", "edit", "web1")
    assert rc == 0, err
    assert conf_bytes(fake).decode() == domain_xml("web1")


def test_edit_of_an_unknown_domain_is_exit_2(fake, editor):
    editor("true")
    _, err = fake.refused("domain", "edit", "web9", code=2)
    assert "unknown domain 'web9'" in err and "domain define web9 --file" in err


def test_editing_a_running_domain_says_when_it_takes_effect(fake, editor):
    node = fake.node("node1")
    fake.conf("web1", memory_mib=512)
    node.add("web1", memory_mib=512)
    fake.havirt("node", "scan")
    editor("sed -i 's/>512</>1024</' \"$f\"")
    rc, out, err = fake.havirt("domain", "edit", "web1")
    assert rc == 0, err
    assert out.splitlines()[-1] == ("web1 runs on node1 (last scan) and keeps its running definition "
                                    "until its next start: it now differs from conf/ in memory "
                                    "512 MiB running, 1024 MiB in conf/")
    editor("sed -i 's/>1024</>2048</' \"$f\"")
    doc = json.loads(fake.havirt("-f", "json", "domain", "edit", "web1")[1])
    assert list(doc) == ["name", "action", "file", "changed", "kept", "diff", "running_on", "drift",
                         "anomalies"]
    assert (doc["action"], doc["changed"], doc["running_on"]) == ("edit", True, "node1")
    assert doc["drift"] == ["memory 512 MiB running, 2048 MiB in conf/"]
    assert len(history(fake)) == 2


# -- define ------------------------------------------------------------------------

def test_define_adds_a_domain(fake, tmp_path):
    src = tmp_path / "web2.xml"
    src.write_text(domain_xml("web2", memory_mib=128))
    rc, out, err = fake.havirt("domain", "define", "web2", "--file", str(src))
    assert (rc, out) == (0, "saved conf/web2.xml\n"), err
    assert conf_bytes(fake, "web2") == src.read_bytes() and history(fake, "web2") == []
    rc, out, _ = fake.havirt("domain", "define", "web2", "--file", str(src))
    assert (rc, out) == (0, "conf/web2.xml unchanged: nothing written\n")


def test_define_replaces_only_with_force_and_keeps_history(fake, tmp_path):
    fake.conf("web1", memory_mib=512)
    before = conf_bytes(fake)
    src = tmp_path / "new.xml"
    src.write_text(domain_xml("web1", memory_mib=640))
    _, err = fake.refused("domain", "define", "web1", "--file", str(src), code=2)
    assert "conf/web1.xml exists and differs (--force replaces it" in err
    assert conf_bytes(fake) == before
    rc, out, err = fake.havirt("-f", "json", "domain", "define", "web1", "--file", str(src), "--force")
    assert rc == 0, err
    doc = json.loads(out)
    (kept,) = history(fake)
    assert doc["kept"] == f"conf/.history/web1/{kept.name}" and kept.name.endswith("-define.xml")
    assert kept.read_bytes() == before and conf_bytes(fake) == src.read_bytes()
    assert "+<domain type='kvm'><name>web1</name><memory unit='MiB'>640</memory>" \
        "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices></devices></domain>" in doc["diff"]


@pytest.mark.parametrize("content, reason", [
    (domain_xml("other"), "<name> is 'other', not 'web1'"),
    ("<domain><name>web1</name>", "not valid XML"),
    (b"\xff\xfe", "not UTF-8 text"),
])
def test_define_checks_the_file_by_the_rules_of_conf(fake, tmp_path, content, reason):
    fake.conf("web1")
    before = home_snapshot(fake.home)
    src = tmp_path / "x.xml"
    src.write_bytes(content if isinstance(content, bytes) else content.encode())
    _, err = fake.refused("domain", "define", "web1", "--file", str(src), "--force", code=2)
    assert reason in err and str(src) in err
    assert home_snapshot(fake.home) == before


def test_define_usage_errors(fake, tmp_path):
    for args, reason in ((["web1", "--file", str(tmp_path / "none.xml")], "none.xml: no such file"),
                         (["web1", "--file", str(tmp_path)], "is a folder"),
                         (["../web1", "--file", str(tmp_path)], "invalid domain name"),
                         (["web1"], "--file")):
        _, err = fake.refused("domain", "define", *args, code=2)
        assert reason in err, (args, err)


# -- undefine --------------------------------------------------------------------------

def test_undefine_moves_the_file_into_the_history(fake):
    fake.node("node1")
    fake.conf("web1")
    before = conf_bytes(fake)
    fake.havirt("domain", "maintenance", "web1", "on")
    rc, out, err = fake.havirt("domain", "undefine", "web1")
    assert rc == 0, err
    (kept,) = history(fake)
    assert out == f"removed conf/web1.xml (kept as conf/.history/web1/{kept.name})\n"
    assert kept.read_bytes() == before and kept.name.endswith("-undefine.xml")
    assert not (fake.home / "conf" / "web1.xml").exists()
    assert "web1" not in fake.state().domains
    assert fake.havirt("-f", "json", "domain", "list")[1].strip() == "[]"
    # and back again from the history
    rc, out, err = fake.havirt("domain", "define", "web1", "--file", str(kept))
    assert rc == 0 and conf_bytes(fake) == before


def test_undefine_is_refused_while_it_runs_anywhere(fake):
    fake.node("node1")
    b = fake.node("node2")
    fake.conf("web1")
    b.add("web1", state="paused")
    before = conf_bytes(fake)
    _, err = fake.refused("domain", "undefine", "web1")
    assert err == "havirt: refused: web1 stays defined; web1 is already paused on node2\n"
    assert conf_bytes(fake) == before and history(fake) == []


def test_undefine_with_a_silent_node_needs_force(fake):
    fake.node("node1")
    fake.node("node2").reachable = False
    fake.conf("web1")
    _, err = fake.refused("domain", "undefine", "web1")
    assert "node node2 did not answer" in err and "--force" in err
    assert (fake.home / "conf" / "web1.xml").exists()
    rc, out, err = fake.havirt("-f", "json", "domain", "undefine", "web1", "--force")
    assert rc == 0, err
    doc = json.loads(out)
    assert (doc["action"], doc["changed"]) == ("undefine", True)
    assert [a["kind"] for a in doc["anomalies"]] == ["unreachable"]
    assert not (fake.home / "conf" / "web1.xml").exists()


def test_undefine_of_an_unknown_domain_is_exit_2(fake):
    fake.node("node1")
    _, err = fake.refused("domain", "undefine", "web9", code=2)
    assert "unknown domain 'web9'" in err
    assert fake.calls == []
