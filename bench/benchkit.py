"""What the lab benchmarks share: a command run (stopping the bench when it
fails), timed, its median, and the lab's environment (tests/lab/run/lab.env)."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sh(cmd: str) -> subprocess.CompletedProcess:
    """Run `cmd` with bash; a failure ends the bench with its stderr's tail."""
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"bench: command failed ({p.returncode}): {cmd}\n{p.stderr[-800:]}")
    return p


def timed(cmd: str) -> float:
    """Seconds `cmd` took (wall)."""
    t = time.perf_counter()
    sh(cmd)
    return time.perf_counter() - t


def median_of(cmd: str, runs: int) -> float:
    return statistics.median(timed(cmd) for _ in range(runs))


def lab_env() -> dict:
    """The lab's KEY=VALUE file, as a dict."""
    env = {}
    for line in (REPO / "tests/lab/run/lab.env").read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    return env
