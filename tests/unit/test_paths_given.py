"""Paths havirt is given or finds: --config, the home's name, a config.yaml
that is a broken link, the metrics file. Each mistake is one line and exit
2 before anything is done; the metrics file is never written through a link
and keeps the exact text prometheus_client makes."""

import os
import stat
import threading

import pytest
from fakes import refused
from prometheus_client import write_to_textfile

from havirt.cli import run
from havirt.scan.cluster import Cluster
from havirt.store.config import load_config
from havirt.store.state import DomainRecord, NodeRecord, State


def cluster(fake):
    fake.node("node1")
    fake.conf("web1")


# -- --config and the home -----------------------------------------------------------

@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_config_option_is_refused_as_an_empty_home_is(fake, value):
    cluster(fake)
    (fake.home / "config.yaml").write_text("lock_timeout: 7\n")
    refused(fake, ["--config", value, "node", "list"], 2,
            "havirt: --config is empty: give the configuration file, or leave --config out")


@pytest.mark.parametrize("how", ["env", "option"])
@pytest.mark.parametrize("home", ["\n", "home\x1b[31m", "ho\tme", "h\x7fome"])
def test_a_home_named_with_a_control_character_is_refused(tmp_path, capsys, monkeypatch, how, home):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HAVIRT_HOME", home if how == "env" else str(tmp_path))
    rc = run(["node", "list"] if how == "env" else ["--home", home, "node", "list"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "holds a control character" in err and "\x1b" not in err and "\t" not in err, err
    assert os.listdir(tmp_path) == []                     # no home made with that name


@pytest.mark.parametrize("name", ["config.yaml", "var/state.yaml"])
def test_a_broken_link_is_not_a_missing_file(fake, tmp_path, name):
    cluster(fake)
    fake.write_config(fence={"node1": {"power_off": "off {node}", "power_status": "st {node}"}})
    path = fake.home / name
    gone = tmp_path / "shared" / "gone.yaml"
    path.unlink()
    path.symlink_to(gone)
    err = refused(fake, ["node", "list"], 2, f"{path} is a symbolic link to {gone}, which does not exist")
    refused(fake, ["node", "scan"], 2, "which does not exist")
    assert path.is_symlink() and "fix the link or remove it" in err


# -- the metrics file ------------------------------------------------------------------

def test_a_metrics_file_not_ending_in_prom_is_refused_before_the_scan(fake, tmp_path):
    cluster(fake)
    refused(fake, ["node", "scan", "--metrics", str(tmp_path / "havirt.txt")], 2,
            "'--metrics': the file must end in .prom")
    fake.write_config(metrics={"textfile": str(tmp_path / "havirt.prom.txt")})
    refused(fake, ["node", "scan"], 2, "key 'metrics.textfile' must name a file that ends in .prom")
    assert fake.calls == [] and not list(tmp_path.glob("havirt.*"))


def test_the_metrics_file_is_never_written_through_a_link(fake, tmp_path):
    cluster(fake)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    prom = tmp_path / "havirt.prom"
    # the temporary name prometheus_client's write_to_textfile opens, following links
    (tmp_path / f"havirt.prom.{os.getpid()}.{threading.current_thread().ident}").symlink_to(victim)
    rc, out, err = fake.havirt("node", "scan", "-q", "--metrics", str(prom))
    assert rc == 0, err
    assert victim.read_text() == "precious\n"
    assert "havirt_node_up" in prom.read_text() and not prom.is_symlink()
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644        # node_exporter's user reads it


def test_a_metrics_folder_linked_by_another_user_is_refused(fake, tmp_path):
    cluster(fake)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "textfiles"
    link.symlink_to(elsewhere)
    os.lchown(link, 65534, 65534)
    rc, out, err = fake.havirt("node", "scan", "-q", "--metrics", str(link / "havirt.prom"))
    assert rc == 1 and err.count("\n") == 1 and "internal error" not in err, err
    assert f"{link} is a symbolic link (to {elsewhere}) made by uid 65534" in err
    assert "(the scan itself was recorded)" in err and os.listdir(elsewhere) == []


def test_the_metrics_text_is_what_prometheus_client_writes(tmp_path):
    from havirt.ops.metrics import scan_registry, write_textfile
    state = State(nodes={"a": NodeRecord("a", "10.0.0.1", cpus=8, memory_mib=16384, reachable=True)},
                  domains={"x y": DomainRecord("x y", node="a", state="running", memory_mib=1000,
                                               vcpus=3)})
    reg = scan_registry(state, {"y"}, Cluster(nodes={}), [], load_config(tmp_path / "none.yaml"),
                        1.5, 1.0e9)
    write_to_textfile(str(tmp_path / "theirs.prom"), reg)
    write_textfile(str(tmp_path / "ours.prom"), reg)
    assert (tmp_path / "ours.prom").read_bytes() == (tmp_path / "theirs.prom").read_bytes()
