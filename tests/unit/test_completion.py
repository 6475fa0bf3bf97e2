"""Shell completion through click's protocol: modules, actions, options, and
node and domain names from the state file and conf/ (never over SSH)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import domain_xml

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


def test_domain_start_we_offers_web1(home):
    assert complete("havirt domain start we", home) == ["web1", "web2"]
    assert complete("havirt domain start web1", home) == ["web1"]


def test_domain_names_are_conf_and_state(home):
    assert complete("havirt domain migrate ", home) == ["db1", "old9", "web1", "web2"]


def test_node_names_where_a_node_is_meant(home):
    assert complete("havirt domain start web1 ", home) == ["node1", "node2"]
    assert complete("havirt domain migrate web1 n", home) == ["node1", "node2"]
    assert complete("havirt domain list --node ", home) == ["node1", "node2"]
    assert complete("havirt domain import --from ", home) == ["node1", "node2"]
    assert complete("havirt node maintenance ", home) == ["node1", "node2"]
    assert complete("havirt node scan node1 ", home) == ["node2"]     # the others


def test_home_option_on_the_line_is_used(home):
    assert complete(f"havirt --home {home} node set ") == ["node1", "node2"]


def test_modules_actions_options_choices(home):
    assert complete("havirt ", home) == ["cluster", "domain", "log", "node"]
    assert complete("havirt node s", home) == ["scan", "set"]
    assert complete("havirt node list --f", home) == ["--format"]
    assert "--yes" in complete("havirt domain start web1 node1 -", home)
    assert complete("havirt node list -f ", home) == ["screen", "tsv", "json"]
    assert complete("havirt node maintenance node1 ", home) == ["on", "off"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_protocols(home, shell):
    assert complete("havirt domain start we", home, shell) == ["web1", "web2"]
    assert complete("havirt domain start web1 ", home, shell) == ["node1", "node2"]


def test_no_home_or_a_bad_state_offers_nothing_and_says_nothing(tmp_path, home):
    assert complete("havirt domain start ", None, cwd=tmp_path) == []
    (home / "var" / "state.yaml").write_text("{not yaml: [")
    assert complete("havirt node scan ", home) == []
    assert complete("havirt domain start w", home) == ["web1", "web2"]   # conf/ still read


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
