"""Prometheus metrics of a scan: what they say, when the file is written, and
that the real promtool accepts it (the lab test also reads it back through a
real node_exporter)."""

import os
import subprocess
import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from havirt.ops.metrics import scan_registry
from havirt.parse.virsh import NodeFacts
from havirt.scan.cluster import Cluster, Finding
from havirt.store.config import load_config
from havirt.store.state import DomainRecord, NodeRecord, State

MIB = 1 << 20


def read(path_or_text) -> dict:
    """{(name, ((label, value), ...)): value} of every sample; families checked."""
    text = path_or_text if isinstance(path_or_text, str) else path_or_text.read_text()
    out = {}
    for fam in text_string_to_metric_families(text):
        assert fam.name.startswith("havirt_") and fam.documentation and fam.type == "gauge"
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def cluster_of(fake):
    fake.node("node1", cpus=4, memory_mib=8192)
    fake.node("node2", cpus=2, memory_mib=4096)
    fake.nodes["node1"].add("web1", memory_mib=512, vcpus=2)
    fake.conf("web1", memory_mib=512, vcpus=2)
    fake.conf("db1", memory_mib=256)


def test_a_scan_writes_every_metric(fake, tmp_path):
    cluster_of(fake)
    fake.leases("node2")
    prom = tmp_path / "havirt.prom"
    before = time.time()
    rc, out, err = fake.havirt("node", "scan", "--metrics", str(prom))
    assert rc == 0, err
    m = read(prom)
    assert value(m, "havirt_node_up", node="node1") == 1 == value(m, "havirt_node_up", node="node2")
    assert value(m, "havirt_node_cpus", node="node1") == 4
    assert value(m, "havirt_node_vcpus_allocated", node="node1") == 2
    assert value(m, "havirt_node_vcpus_limit", node="node2") == 8          # 2 CPUs x 4.0
    assert value(m, "havirt_node_memory_total_bytes", node="node1") == 8192 * MIB
    assert value(m, "havirt_node_memory_usable_bytes", node="node1") == (8192 - 1024) * MIB
    assert value(m, "havirt_node_memory_allocated_bytes", node="node1") == 512 * MIB
    assert value(m, "havirt_node_memory_allocated_bytes", node="node2") == 0
    assert value(m, "havirt_node_domains_running", node="node1") == 1
    assert value(m, "havirt_node_maintenance", node="node1") == 0
    assert before - 1 <= value(m, "havirt_node_last_scan_timestamp_seconds", node="node1") <= time.time()
    assert 0 <= value(m, "havirt_node_last_scan_age_seconds", node="node1") < 5
    assert value(m, "havirt_node_scan_duration_seconds", node="node1") is not None
    assert value(m, "havirt_domain_running", domain="web1", node="node1") == 1
    assert value(m, "havirt_domain_running", domain="db1", node="") == 0
    assert value(m, "havirt_domain_maintenance", domain="db1") == 0
    for kind in ("duplicate", "no-xml", "persistent", "unreachable"):
        assert value(m, "havirt_scan_anomalies", kind=kind) == 0
    assert 0 < value(m, "havirt_scan_duration_seconds") < 30
    assert before <= value(m, "havirt_scan_timestamp_seconds") <= time.time()
    assert value(m, "havirt_scan_nodes") == 2
    assert value(m, "havirt_node_leases_active", node="node1") == 0      # as the scan saw
    assert value(m, "havirt_node_leases_active", node="node2") == 1


def test_promtool_accepts_the_file(fake, tmp_path):
    cluster_of(fake)
    prom = tmp_path / "havirt.prom"
    assert fake.havirt("node", "scan", "-q", "--metrics", str(prom))[0] == 0
    p = subprocess.run(["promtool", "check", "metrics"], stdin=prom.open(), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stdout + p.stderr == "", p


def test_config_key_under_quiet_and_with_anomalies(fake, tmp_path):
    """The file matters most when something is wrong: a double run, a node down."""
    cluster_of(fake)
    fake.nodes["node2"].add("web1", memory_mib=512, vcpus=2)     # web1 runs twice
    fake.node("node3").reachable = False
    prom = tmp_path / "metrics" / "havirt.prom"
    prom.parent.mkdir()
    fake.write_config(metrics={"textfile": str(prom)})
    rc, out, err = fake.havirt("node", "scan", "-q")
    assert rc == 1 and "CRITICAL duplicate web1" in out
    m = read(prom)
    assert value(m, "havirt_scan_anomalies", kind="duplicate") == 1
    assert value(m, "havirt_scan_anomalies", kind="unreachable") == 1
    assert value(m, "havirt_domain_running", domain="web1", node="node1") == 1
    assert value(m, "havirt_domain_running", domain="web1", node="node2") == 1
    assert value(m, "havirt_node_up", node="node3") == 0
    assert value(m, "havirt_node_last_scan_timestamp_seconds", node="node3") is None


def test_option_wins_over_config_key(fake, tmp_path):
    cluster_of(fake)
    fake.write_config(metrics={"textfile": str(tmp_path / "from-config.prom")})
    rc, _, err = fake.havirt("node", "scan", "-q", "--metrics", str(tmp_path / "given.prom"))
    assert rc == 0, err
    assert (tmp_path / "given.prom").exists() and not (tmp_path / "from-config.prom").exists()


def test_not_asked_no_file(fake, tmp_path):
    cluster_of(fake)
    assert fake.havirt("node", "scan", "-q")[0] == 0
    assert not list(tmp_path.rglob("*.prom*"))


def test_replaced_atomically_leaving_no_temporary_file(fake, tmp_path):
    cluster_of(fake)
    prom = tmp_path / "havirt.prom"
    assert fake.havirt("node", "scan", "-q", "--metrics", str(prom))[0] == 0
    first = os.stat(prom).st_ino
    reader = prom.open()          # node_exporter in the middle of reading the old file
    assert fake.havirt("node", "scan", "-q", "--metrics", str(prom))[0] == 0
    assert os.stat(prom).st_ino != first          # a new file renamed over the old one
    assert "havirt_node_up" in reader.read()     # the reader still has the whole old one
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["havirt.prom", "home"]


@pytest.mark.parametrize("quiet", [False, True])
def test_cannot_write_one_line_exit_1_scan_kept(fake, tmp_path, quiet):
    cluster_of(fake)
    fake.nodes["node1"].add("ghost", memory_mib=64)               # an anomaly to report too
    bad = tmp_path / "no-such-folder" / "havirt.prom"
    rc, out, err = fake.havirt("node", "scan", *(["-q"] if quiet else []), "--metrics", str(bad))
    assert rc == 1
    assert err == f"havirt: cannot write the metrics file {bad}: No such file or directory " \
                  "(the scan itself was recorded)\n"
    assert "WARNING no-xml ghost" in out                         # the anomalies still shown
    state = fake.state()
    assert state.nodes["node1"].last_scan and state.domains["ghost"].node == "node1"


def test_json_output_stays_json_with_metrics(fake, tmp_path):
    import json
    cluster_of(fake)
    rc, out, _ = fake.havirt("node", "scan", "--metrics", str(tmp_path / "h.prom"), "-f", "json")
    assert rc == 0 and [n["name"] for n in json.loads(out)["nodes"]] == ["node1", "node2"]


def test_leases_maintenance_and_an_unscanned_node_from_the_state(tmp_path):
    """The pure function, on a hand-made state: leases known or not, flags."""
    state = State(nodes={
        "a": NodeRecord("a", "10.0.0.1", cpus=8, memory_mib=16384, memory_cap_mib=8000,
                        reachable=True, leases=True, maintenance=True,
                        last_scan="2026-01-01T00:00:00Z"),
        "b": NodeRecord("b", "10.0.0.2", cpus=8, memory_mib=16384, reachable=True, leases=False),
        "c": NodeRecord("c", "10.0.0.3")},       # added, never answered
        domains={"x": DomainRecord("x", node="a", state="running", memory_mib=1000, vcpus=3,
                                  maintenance=True)})
    cluster = Cluster(nodes={"a": NodeFacts("a", duration=0.25)})
    findings = [Finding("warning", "lease-missing", "b", "made up for the test")]
    cfg = load_config(tmp_path / "none.yaml")
    when = 1767225600.0 + 90                      # 90 s after a's last scan
    text = generate_latest(scan_registry(state, {"y"}, cluster, findings, cfg, 1.5, when)).decode()
    m = read(text)
    assert value(m, "havirt_node_leases_active", node="a") == 1
    assert value(m, "havirt_node_leases_active", node="b") == 0
    assert value(m, "havirt_node_leases_active", node="c") is None
    assert value(m, "havirt_node_memory_usable_bytes", node="a") == 8000 * MIB   # the cap
    assert value(m, "havirt_node_maintenance", node="a") == 1
    assert value(m, "havirt_node_up", node="c") == 0
    assert value(m, "havirt_node_memory_total_bytes", node="c") is None          # unknown
    assert value(m, "havirt_node_last_scan_age_seconds", node="a") == 90
    assert value(m, "havirt_node_scan_duration_seconds", node="a") == 0.25
    assert value(m, "havirt_node_scan_duration_seconds", node="b") is None       # not asked
    assert value(m, "havirt_domain_running", domain="x", node="a") == 1
    assert value(m, "havirt_domain_maintenance", domain="x") == 1
    assert value(m, "havirt_domain_running", domain="y", node="") == 0           # conf/ only
    assert value(m, "havirt_scan_anomalies", kind="lease-missing") == 1          # a new kind
    assert value(m, "havirt_scan_anomalies", kind="duplicate") == 0
    assert value(m, "havirt_scan_duration_seconds") == 1.5
    assert value(m, "havirt_scan_timestamp_seconds") == when


def test_the_config_key(tmp_path, monkeypatch):
    from pathlib import Path

    from havirt.errors import ConfigError
    monkeypatch.setenv("HOME", str(tmp_path))
    sample = Path(__file__).resolve().parents[2] / "config.sample.yaml"
    assert load_config(sample).metrics_textfile is None          # documented there, off
    (tmp_path / "c.yaml").write_text("metrics:\n  textfile: ~/prom/havirt.prom\n")
    assert load_config(tmp_path / "c.yaml").metrics_textfile == f"{tmp_path}/prom/havirt.prom"
    (tmp_path / "c.yaml").write_text("metrics:\n  textfile: 5\n")
    with pytest.raises(ConfigError, match="key 'metrics.textfile' must be a string or null"):
        load_config(tmp_path / "c.yaml")
