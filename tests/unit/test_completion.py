"""Shell completion through click's protocol: modules, actions, options, and
node and domain names from the state file and conf/ (never over SSH)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.shell_completion import ShellComplete
from conftest import domain_xml

from havirt.cli import cli, load_commands

load_commands()

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / "conf").mkdir(parents=True)
    (h / "var").mkdir()
    for name in ("web1", "web2", "db1"):
        (h / "conf" / f"{name}.xml").write_text(domain_xml(name))
    (h / "var" / "state.yaml").write_text(
        '{"format": 1, "updated": null, "nodes": {"node1": {"address": "10.0.0.1"}, '
        '"node2": {"address": "10.0.0.2"}}, "domains": {"old9": {"node": null}}}\n')
    return h


def complete(line: str, home: Path | None = None, shell: str = "bash", cwd: Path = ROOT):
    """What `havirt` offers for the last word of `line`, asked as each shell's
    script asks it (bash/zsh: COMP_WORDS and the word's index in COMP_CWORD;
    fish: the line and the word itself)."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    env = {k: v for k, v in os.environ.items() if k != "HAVIRT_HOME"}
    env.update(_HAVIRT_COMPLETE=f"{shell}_complete", COMP_WORDS=" ".join(words),
               COMP_CWORD=words[-1] if shell == "fish" else str(len(words) - 1))
    if home is not None:
        env["HAVIRT_HOME"] = str(home)
    # run as an installed havirt is (python -m havirt): no home but HAVIRT_HOME
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.run([sys.executable, "-m", "havirt"], env=env, capture_output=True,
                       text=True, timeout=30, cwd=cwd)
    assert p.returncode == 0 and p.stderr == "", p
    lines = p.stdout.splitlines()
    if shell == "zsh":      # type, value, help: three lines an item
        return [v for t, v in zip(lines[0::3], lines[1::3]) if t == "plain"]
    return [x.split(",", 1)[1] for x in lines if x.startswith("plain,")]


def offered(line: str, home: Path, monkeypatch) -> list[str]:
    """The same, in this process (fast): click's completion of `line`'s last word."""
    monkeypatch.setenv("HAVIRT_HOME", str(home))
    words = line.split() + ([""] if line.endswith(" ") else [])
    comp = ShellComplete(cli, {}, "havirt", "_HAVIRT_COMPLETE")
    return [item.value for item in comp.get_completions(words[1:-1], words[-1])]


def test_domain_start_we_offers_web1(home):
    """Through the protocol bash's script speaks, in a process of its own."""
    assert complete("havirt domain start we", home) == ["web1", "web2"]
    assert complete("havirt domain start web1", home) == ["web1"]


def test_domain_names_are_conf_and_state(home, monkeypatch):
    assert offered("havirt domain migrate ", home, monkeypatch) == ["db1", "old9", "web1", "web2"]


@pytest.mark.parametrize("line", ["havirt domain start web1 ", "havirt domain migrate web1 n",
                                  "havirt domain list --node ", "havirt domain import --from ",
                                  "havirt node maintenance ", "havirt node set ",
                                  "havirt node scan ", "havirt node failover ",
                                  "havirt node failover node3 --to "])
def test_node_names_where_a_node_is_meant(home, monkeypatch, line):
    assert offered(line, home, monkeypatch) == ["node1", "node2"]


def test_names_already_given_are_not_offered_again(home, monkeypatch):
    assert offered("havirt node scan node1 ", home, monkeypatch) == ["node2"]
    assert offered("havirt domain import web1 --from node1 w", home, monkeypatch) == ["web2"]


def test_home_option_on_the_line_is_used(tmp_path, home, monkeypatch):
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    assert offered(f"havirt --home {home} node set ", elsewhere, monkeypatch) == ["node1", "node2"]
    assert offered("havirt node set ", elsewhere, monkeypatch) == []


def test_modules_actions_options_choices(home, monkeypatch):
    assert offered("havirt ", home, monkeypatch) == ["cluster", "domain", "image", "log", "node", "store"]
    assert offered("havirt node s", home, monkeypatch) == ["scan", "set"]
    assert offered("havirt node list --f", home, monkeypatch) == ["--format"]
    assert "--yes" in offered("havirt domain start web1 node1 -", home, monkeypatch)
    assert offered("havirt node list -f ", home, monkeypatch) == ["screen", "tsv", "json"]
    assert offered("havirt node maintenance node1 ", home, monkeypatch) == ["on", "off"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_protocols(home, shell):
    assert complete("havirt domain start web1 ", home, shell) == ["node1", "node2"]


def test_no_home_offers_nothing_and_says_nothing(tmp_path):
    assert complete("havirt domain start ", None, cwd=tmp_path) == []


def test_a_bad_state_file_offers_no_nodes_but_conf_still_counts(home, monkeypatch):
    (home / "var" / "state.yaml").write_text("{not yaml: [")
    assert offered("havirt node scan ", home, monkeypatch) == []
    assert offered("havirt domain start w", home, monkeypatch) == ["web1", "web2"]


@pytest.mark.parametrize("shell,marker", [("bash", "complete -o nosort -F _havirt_completion havirt"),
                                          ("zsh", "#compdef havirt"),
                                          ("fish", "complete --no-files --command havirt")])
def test_the_scripts_to_source(shell, marker):
    p = subprocess.run([sys.executable, str(ROOT / "havirt.py")], capture_output=True, text=True,
                       env={**os.environ, "_HAVIRT_COMPLETE": f"{shell}_source"}, timeout=30)
    assert p.returncode == 0 and marker in p.stdout, p


def test_real_bash_completes_through_the_sourced_script(tmp_path, home):
    """bash itself: source the script, press TAB (call the function) on a line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "havirt").symlink_to(ROOT / "havirt.py")
    script = ('eval "$(_HAVIRT_COMPLETE=bash_source havirt)"\n'
              'COMP_WORDS=(havirt domain start we); COMP_CWORD=3\n'
              '_havirt_completion havirt\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HAVIRT_HOME": str(home)}
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p
    assert p.stdout.split() == ["web1", "web2"]
