"""One line naming the machine a benchmark ran on (for the reports)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine(load: bool = False) -> str:
    """Host, cores, CPU model, memory, kernel and Python; with `load`, the
    load average when it is called (a busy machine plans slower)."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    text = (f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")
    if load:
        text += f", load average {Path('/proc/loadavg').read_text().split()[0]} at the start"
    return text
