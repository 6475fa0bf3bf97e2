"""make install: staged with DESTDIR, moved to PREFIX (what a package does), then
the command, the manual page and bash completion used from there; make uninstall.

Slow (it builds a venv and installs havirt's dependencies in it): run by
`make test`, outside the unit tests.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FILES = ["bin/havirt", "share/man/man1/havirt.1", "share/bash-completion/completions/havirt",
         "share/zsh/site-functions/_havirt", "share/fish/vendor_completions.d/havirt.fish",
         "share/doc/havirt/config.sample.yaml", "share/doc/havirt/README.md",
         "share/doc/havirt/havirt-scan.service", "share/doc/havirt/havirt-scan.timer",
         "share/doc/havirt/havirt-alerts.yml",
         "lib/havirt/bin/python"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    prefix, stage = tmp / "usr", tmp / "stage"
    p = subprocess.run(["make", "-s", "-C", str(ROOT), "install", f"PREFIX={prefix}",
                        f"DESTDIR={stage}"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not prefix.exists()                     # everything went under DESTDIR
    shutil.move(str(stage / str(prefix).lstrip("/")), str(prefix))
    shutil.rmtree(stage)
    return prefix, str(stage)


def test_every_file_in_its_place_and_none_names_the_staging_folder(installed):
    prefix, stage = installed
    for f in FILES:
        assert (prefix / f).exists(), f
    for f in FILES[:-1]:
        assert stage not in (prefix / f).read_text(), f
    assert os.access(prefix / "bin" / "havirt", os.X_OK)


def test_the_command_runs_from_prefix(installed, tmp_path):
    prefix, _ = installed
    p = subprocess.run([str(prefix / "bin" / "havirt"), "--version"], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)      # a checkout in cwd is not imported
    assert (p.returncode, p.stdout) == (0, "havirt, version 0.1.0\n"), p
    home = tmp_path / "home"
    p = subprocess.run([str(prefix / "bin" / "havirt"), "node", "list", "-f", "json"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "HAVIRT_HOME": str(home)})
    assert (p.returncode, p.stdout, p.stderr) == (0, "[]\n", ""), p
    havirt = (prefix / "lib/havirt/bin/python").parent
    assert str(havirt) in (prefix / "bin" / "havirt").read_text()


def test_the_installed_manual_page(installed):
    prefix, _ = installed
    p = subprocess.run(["man", "--warnings", "-l", str(prefix / "share/man/man1/havirt.1")],
                       capture_output=True, text=True, timeout=60,
                       env={"MANWIDTH": "80", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0 and p.stderr == "" and "havirt domain start" in p.stdout, p
    p = subprocess.run(["man", "-w", "havirt"], capture_output=True, text=True, timeout=60,
                       env={"MANPATH": str(prefix / "share/man"), "PATH": "/usr/bin:/bin"})
    assert p.stdout.strip() == str(prefix / "share/man/man1/havirt.1"), p


def test_the_installed_bash_completion(installed, tmp_path):
    """bash loads the installed file and completes through the installed command."""
    prefix, _ = installed
    home = tmp_path / "home"
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "web1.xml").write_text("<domain><name>web1</name></domain>\n")
    script = (f'source {prefix}/share/bash-completion/completions/havirt\n'
              'COMP_WORDS=(havirt domain start we); COMP_CWORD=3\n'
              '_havirt_completion havirt\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = {**os.environ, "PATH": f"{prefix}/bin:/usr/bin:/bin", "HAVIRT_HOME": str(home)}
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                       text=True, timeout=60, env=env, cwd=tmp_path)
    assert (p.returncode, p.stdout) == (0, "web1\n"), p
    assert (prefix / "share/zsh/site-functions/_havirt").read_text().startswith("#compdef havirt")
    assert "complete --no-files --command havirt" in \
        (prefix / "share/fish/vendor_completions.d/havirt.fish").read_text()


def test_uninstall_removes_it_all(installed):
    prefix, _ = installed
    p = subprocess.run(["make", "-s", "-C", str(ROOT), "uninstall", f"PREFIX={prefix}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p
    assert [f for f in prefix.rglob("*") if f.is_file()] == []
