"""What one session on an open master costs: started by `ssh` (its mux
client) or asked for by havirt itself (remote/mux.py). Needs a lab up
(`tests/lab/lab up`); run from the checkout:

    .venv/bin/python bench/session_cost.py [NODE] [SESSIONS]

Sessions of `true` on NODE (default node2), one after the other, each way
twice, on a master opened first in a private folder (closed at the end).
Per session: wall time, the whole machine's CPU (/proc/stat: the node's
sshd and shell included, and whatever else runs), and this process's
with its children (the admin host's share).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time

from benchkit import REPO, lab_env

sys.path.insert(0, str(REPO))

from havirt.remote.commands import Command  # noqa: E402
from havirt.remote.openssh import OpenSSHRunner  # noqa: E402
from havirt.remote.processes import Process, drive  # noqa: E402
from havirt.remote.transport import Target  # noqa: E402
from havirt.store.config import load_config  # noqa: E402


def busy() -> float:
    """CPU seconds the whole machine spent busy since boot."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return sum(int(x) for x in fields[1:4] + fields[6:9]) / os.sysconf("SC_CLK_TCK")


def own() -> float:
    """CPU seconds of this process and its children."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                resource.getrusage(resource.RUSAGE_CHILDREN)))


def main() -> None:
    node = sys.argv[1] if len(sys.argv) > 1 else "node2"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    env = lab_env()
    cfg = load_config(f"{env['LAB_HOME']}/config.yaml").ssh
    cfg.backend = "openssh"
    address = f"10.231.0.{10 + int(node[len('node'):])}"
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o700)
        r = OpenSSHRunner(cfg, {node: Target(node, address)}, folder=folder)
        r.run(node, Command(op="true", argv=("true",)))         # opens the master
        try:
            for way in ("ssh", "havirt", "ssh", "havirt"):
                b0, c0, t0 = busy(), own(), time.monotonic()
                for _ in range(n):
                    p = Process(r.argv(node, "true"), None, 30) if way == "ssh" else \
                        r.session(node, "true", None, 30)
                    drive([p], 1)
                    if p.returncode != 0 or (way == "havirt" and not p.shared):
                        raise SystemExit(f"bench: a session failed: {bytes(p.err)!r}")
                print(f"{way:>6}: {n} sessions of true on {node}: per session "
                      f"{(time.monotonic() - t0) / n * 1000:.1f} ms wall, "
                      f"{(busy() - b0) / n * 1000:.1f} ms of the machine's CPU, "
                      f"{(own() - c0) / n * 1000:.1f} ms of this process and its children")
        finally:
            subprocess.run(r.control_argv(node, "exit"), capture_output=True, timeout=30)


if __name__ == "__main__":
    main()
