"""contrib/: the systemd service and timer do what the cron line does."""

import configparser
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"


def unit(name):
    c = configparser.ConfigParser(interpolation=None, strict=False)
    c.optionxform = str
    c.read_string((CONTRIB / name).read_text())
    return c


def cron_line():
    """The cron line the README documents."""
    text = (ROOT / "README.md").read_text()
    (line,) = {m for m in re.findall(r"^\*/5 \* \* \* \* (.+)$", text, re.M)}
    return line


def test_the_service_runs_the_cron_command():
    service = unit("havirt-scan.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"] == cron_line() == "/opt/havirt/havirt.py node scan -q"


def test_the_timer_fires_every_5_minutes_like_cron():
    timer = unit("havirt-scan.timer")
    assert timer["Install"]["WantedBy"] == "timers.target"
    p = subprocess.run(["systemd-analyze", "calendar", "--iterations=3",
                        timer["Timer"]["OnCalendar"]], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p
    assert "Normalized form: *-*-* *:00/5:00" in p.stdout
    minutes = [int(t.split(":")[1]) for t in re.findall(r"\d\d:\d\d:\d\d", p.stdout)]
    assert len(minutes) == 3 and all(m % 5 == 0 for m in minutes)


def test_systemd_accepts_both_units(tmp_path):
    """systemd-analyze verify, with ExecStart pointed at this checkout's havirt.py."""
    for name in ("havirt-scan.service", "havirt-scan.timer"):
        text = (CONTRIB / name).read_text().replace("/opt/havirt/havirt.py", str(ROOT / "havirt.py"))
        (tmp_path / name).write_text(text)
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "havirt-scan.service"),
                        str(tmp_path / "havirt-scan.timer")], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert p.returncode == 0 and p.stderr == "", p


RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # web1 runs on node1; from minute 5 also on node2
      - series: 'havirt_domain_running{{domain="web1",node="node1",job="node"}}'
        values: '1x20'
      - series: 'havirt_domain_running{{domain="web1",node="node2",job="node"}}'
        values: '_x5 1x15'
      - series: 'havirt_domain_running{{domain="db1",node="",job="node"}}'
        values: '0x20'
      # node3 stops answering at minute 2
      - series: 'havirt_node_up{{node="node3",job="node"}}'
        values: '1 1 0x18'
      - series: 'havirt_node_up{{node="node1",job="node"}}'
        values: '1x20'
      # node1: 6 GiB usable, 7 GiB allocated from minute 1
      - series: 'havirt_node_memory_usable_bytes{{node="node1",job="node"}}'
        values: '6442450944x30'
      - series: 'havirt_node_memory_allocated_bytes{{node="node1",job="node"}}'
        values: '1073741824 7516192768x29'
      # the scan ran at 0 s and never again
      - series: 'havirt_scan_timestamp_seconds{{job="node"}}'
        values: '0x30'
    alert_rule_test:
      - eval_time: 4m
        alertname: HavirtDomainRunsTwice
        exp_alerts: []
      - eval_time: 6m
        alertname: HavirtDomainRunsTwice
        exp_alerts:
          - exp_labels: {{severity: critical, domain: web1}}
            exp_annotations:
              summary: "web1 runs on 2 nodes at once: its disks are being corrupted"
      - eval_time: 11m
        alertname: HavirtNodeDown
        exp_alerts: []
      - eval_time: 12m
        alertname: HavirtNodeDown
        exp_alerts:
          - exp_labels: {{severity: warning, node: node3, job: node}}
            exp_annotations:
              summary: "node node3 has not answered havirt's scans for 10 minutes"
      - eval_time: 15m
        alertname: HavirtMemoryOvercommitted
        exp_alerts: []
      - eval_time: 16m
        alertname: HavirtMemoryOvercommitted
        exp_alerts:
          - exp_labels: {{severity: warning, node: node1, job: node}}
            exp_annotations:
              summary: "node node1 holds more domain memory than it may give"
      - eval_time: 15m
        alertname: HavirtScanStale
        exp_alerts: []
      - eval_time: 16m
        alertname: HavirtScanStale
        exp_alerts:
          - exp_labels: {{severity: warning, job: node}}
            exp_annotations:
              summary: "havirt's scan has not run for 16m 0s (cron or timer)"
"""


def test_the_alert_rules_fire_when_they_should(tmp_path):
    """promtool's rule unit tests: each alert fires on its series, and not before."""
    rules = CONTRIB / "havirt-alerts.yml"
    p = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and "SUCCESS: 4 rules found" in p.stdout, p
    (tmp_path / "tests.yml").write_text(RULE_TESTS.format(rules=rules))
    p = subprocess.run(["promtool", "test", "rules", str(tmp_path / "tests.yml")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "SUCCESS" in p.stdout, p.stdout + p.stderr


def test_the_readme_shows_these_rules():
    assert (CONTRIB / "havirt-alerts.yml").read_text() in (ROOT / "README.md").read_text()
