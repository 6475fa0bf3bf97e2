"""Metrics in the lab: real scans write the file, the real promtool checks it, a
real node_exporter (textfile collector) serves it, and what it serves says
what virsh says on the nodes."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from labkit import REPORT
from prometheus_client.parser import text_string_to_metric_families
from test_core import nodeinfo

MIB = 1 << 20


def samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))))


def promtool(path: Path) -> subprocess.CompletedProcess:
    with path.open() as f:
        return subprocess.run(["promtool", "check", "metrics"], stdin=f, capture_output=True,
                              text=True, timeout=60)


class NodeExporter:
    """prometheus-node-exporter on 127.0.0.1, a free port, the textfile collector only."""

    def __init__(self, folder: Path):
        exe = shutil.which("prometheus-node-exporter")
        assert exe, "prometheus-node-exporter is not installed (make deps)"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = folder.parent / "node_exporter.log"
        self.proc = subprocess.Popen(
            [exe, f"--web.listen-address=127.0.0.1:{self.port}", "--collector.disable-defaults",
             "--collector.textfile", f"--collector.textfile.directory={folder}"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("w"), stdin=subprocess.DEVNULL)

    def scrape(self, timeout: float = 15) -> str:
        end = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    raise AssertionError(f"node_exporter did not answer on port {self.port}: "
                                         f"{self.log.read_text()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()           # the process this test started, by its pid
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def textfile_dir(tmp_path):
    folder = tmp_path / "textfile"
    folder.mkdir()
    return folder


@pytest.fixture
def exporter(textfile_dir):
    ne = NodeExporter(textfile_dir)
    yield ne
    ne.stop()


def test_scan_metrics_through_promtool_and_node_exporter(lab, hv, textfile_dir, exporter):
    prom = textfile_dir / "havirt.prom"
    facts = {n: nodeinfo(lab, n) for n in lab.nodes}

    # 1. all is well: --metrics FILE, under -q
    hv.yes("domain", "start", "tiny1", "node1")
    r = hv.run("node", "scan", "-q", "--metrics", prom)
    assert (r.rc, r.out, r.err) == (0, "", ""), r
    p = promtool(prom)
    assert p.returncode == 0 and p.stdout + p.stderr == "", p
    t0 = time.monotonic()
    m = samples(exporter.scrape())
    REPORT.append(f"metrics: node_exporter served havirt's file in {time.monotonic() - t0:.2f} s")
    assert value(m, "node_textfile_scrape_error") == 0
    assert value(m, "node_textfile_mtime_seconds", file=str(prom)) is not None
    state = hv.state()["nodes"]
    for node in lab.nodes:
        cpus, mib = facts[node]
        assert value(m, "havirt_node_up", node=node) == 1
        assert isinstance(state[node]["leases"], bool)           # the scan saw them, on or off
        assert value(m, "havirt_node_leases_active", node=node) == int(state[node]["leases"])
        assert value(m, "havirt_node_cpus", node=node) == cpus
        assert value(m, "havirt_node_memory_total_bytes", node=node) == mib * MIB
        assert value(m, "havirt_node_memory_usable_bytes", node=node) == (mib - 1024) * MIB
    assert lab.running("node1") == {"tiny1"}
    assert value(m, "havirt_domain_running", domain="tiny1", node="node1") == 1
    assert value(m, "havirt_node_domains_running", node="node1") == 1
    assert value(m, "havirt_node_memory_allocated_bytes", node="node1") > 0
    assert value(m, "havirt_node_vcpus_allocated", node="node1") >= 1
    assert value(m, "havirt_scan_anomalies", kind="duplicate") == 0
    assert value(m, "havirt_scan_nodes") == len(lab.nodes)

    # 2. something wrong behind havirt's back: the config key; node_exporter,
    # still running, serves the new file
    hv.configure(metrics={"textfile": str(prom)})
    lab.create("node2", "tiny2")
    lab.create("node3", "tiny2")                          # diskless: libvirt lets it run twice
    lab.fault("node3", "link-down")
    r = hv.run("node", "scan", "-q")
    assert r.rc == 1 and "CRITICAL duplicate tiny2" not in r.out, r   # node3 is silent now
    assert "ERROR unreachable node3" in r.out, r
    lab.undo_faults(["node3"])
    r = hv.run("node", "scan", "-q")
    assert r.rc == 1 and "CRITICAL duplicate tiny2" in r.out, r
    p = promtool(prom)
    assert p.returncode == 0 and p.stdout + p.stderr == "", p
    m = samples(exporter.scrape())
    assert value(m, "havirt_scan_anomalies", kind="duplicate") == 1
    assert value(m, "havirt_domain_running", domain="tiny2", node="node2") == 1
    assert value(m, "havirt_domain_running", domain="tiny2", node="node3") == 1
    assert sorted(lab.where("tiny2")) == ["node2", "node3"]
    assert value(m, "havirt_node_up", node="node3") == 1
    assert 0 <= value(m, "havirt_node_last_scan_age_seconds", node="node3") < 60
    assert [f.name for f in textfile_dir.iterdir()] == ["havirt.prom"]   # no temporary left


def test_unreachable_node_in_the_metrics(lab, hv, textfile_dir, exporter):
    prom = textfile_dir / "havirt.prom"
    hv.configure(metrics={"textfile": str(prom)})
    lab.fault("node2", "link-down")
    r = hv.run("node", "scan", "-q")
    assert r.rc == 1 and "ERROR unreachable node2" in r.out, r
    m = samples(exporter.scrape())
    assert value(m, "havirt_node_up", node="node2") == 0
    assert value(m, "havirt_node_up", node="node1") == 1
    assert value(m, "havirt_scan_anomalies", kind="unreachable") == 1
    # its last answered scan was `node add`: the age says how stale its numbers are
    assert value(m, "havirt_node_last_scan_age_seconds", node="node2") >= 0
    assert value(m, "havirt_node_scan_duration_seconds", node="node2") is None
