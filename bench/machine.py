"""One line naming the machine a benchmark ran on (for the reports)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def load_average() -> str:
    """The 1-minute load average now (a busy machine plans slower)."""
    return Path("/proc/loadavg").read_text().split()[0]


def machine() -> str:
    """Host, cores, CPU model, memory, kernel and Python."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    text = (f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")
    return text
