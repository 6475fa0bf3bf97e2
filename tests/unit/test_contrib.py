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
