"""Everyday commands against the lab's real Linux guests (guest1, guest2: TCG, a
serial console with a shell, an init that prints a ready line and powers off
on the ACPI power button).

Proven here, on the nodes themselves: a graceful `shutdown --wait`; an
offline and a live migration of a running guest; `reboot` and `reset` (the
ready line appears again in the node's serial log); `console` through a real
pty (the guest's shell answers, Ctrl-] detaches, exit 0); `info`; `edit`
through a scripted $EDITOR, whose memory the next `start` uses; `define` and
`undefine`.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time

import pytest
from labkit import REPORT, refused, wait_until

GUEST = "guest1"
BOOT_TIMEOUT = 120           # TCG boot on a busy 2-core machine
READY = re.compile(rf"havirt-guest {GUEST} ready \(uptime ([0-9.]+) s\)")


def wait_ready(lab, node: str, times: int = 1) -> str:
    """Until the ready line appeared `times` times in the node's serial log; the log."""
    def ready() -> bool:
        return len(READY.findall(lab.console_text(node, GUEST))) >= times
    wait_until(ready, BOOT_TIMEOUT, interval=0.5)
    log = lab.console_text(node, GUEST)
    assert len(READY.findall(log)) >= times, f"{GUEST} on {node} not ready {times}x:\n{log[-2000:]}"
    return log


def start_guest(lab, hv, node: str) -> None:
    hv.yes("domain", "start", GUEST, node)
    assert lab.where(GUEST) == [node]
    wait_ready(lab, node)


class Pty:
    """havirt run in a real terminal (a pty), read and typed into like an admin would."""

    def __init__(self, argv: list[str], cwd: str):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.seen = b""

    def expect(self, pattern: str, timeout: float = 60, must: bool = True) -> re.Match | None:
        end = time.monotonic() + timeout
        rx = re.compile(pattern.encode())
        while True:
            m = rx.search(self.seen)
            if m:
                return m
            left = end - time.monotonic()
            if left <= 0 and not must:
                return None
            assert left > 0, f"{pattern!r} not seen in {timeout} s; the terminal showed:\n" \
                             f"{self.seen.decode(errors='replace')[-3000:]}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:           # the other end closed: nothing more will come
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    time.sleep(0.1)
                self.seen += chunk

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def ask(self, command: str, answer: str) -> re.Match:
        """Type `command` into the guest's shell until `answer` comes back: what is
        typed while virsh console sets the terminal up is flushed, not sent."""
        for _ in range(6):
            self.type(command + "\r")
            m = self.expect(answer, 10, must=False)
            if m:
                return m
        return self.expect(answer, 0)         # fails, showing what the terminal showed

    def wait(self, timeout: float = 30) -> int:
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:
                    pass
        return self.proc.poll()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)   # its own session only
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def console(hv):
    opened = []

    def open_console(name: str = GUEST) -> Pty:
        p = Pty(hv.argv("domain", "console", name), str(hv.home))
        opened.append(p)
        return p
    yield open_console
    for p in opened:
        p.close()


def guest_uptime(term: Pty) -> float:
    """Ask the guest's shell for its uptime, through the console."""
    tag = f"{time.monotonic_ns() % 100000}"
    return float(term.ask(f"echo up-{tag}-$(cut -d' ' -f1 /proc/uptime)-end",
                          rf"up-{tag}-([0-9.]+)-end").group(1))


# -- shutdown, reboot, reset ---------------------------------------------------------


def test_reboot_reset_and_a_graceful_shutdown_of_a_real_guest(lab, hv):
    start_guest(lab, hv, "node1")
    r = hv.run("domain", "reboot", GUEST)
    assert r.rc == 0 and f"ssh root@10.231.0.11 'virsh -c qemu:///system reboot {GUEST}'" in r.out, r
    time.sleep(1)
    assert len(READY.findall(lab.console_text("node1", GUEST))) == 1        # a dry run did nothing

    t0 = time.monotonic()
    r = hv.yes("domain", "reboot", GUEST)
    assert f"{GUEST} is running on node1" in r.out, r
    log = wait_ready(lab, "node1", 2)                               # booted again, same qemu
    rebooted = time.monotonic() - t0
    assert "power button" in log
    uptimes = [float(u) for u in READY.findall(log)]
    assert lab.where(GUEST) == ["node1"]

    hv.yes("domain", "reset", GUEST)
    log = wait_ready(lab, "node1", 3)
    assert [float(u) for u in READY.findall(log)][:2] == uptimes
    assert log.count("power button") == 1                           # a reset asks nobody

    r = hv.yes("domain", "shutdown", GUEST, "--wait", "60")
    assert f"{GUEST} is off" in r.out and r.seconds < 60, r
    assert lab.where(GUEST) == []
    REPORT.append(f"real guest: havirt domain reboot to the second ready line {rebooted:.1f} s; "
                  f"domain shutdown --wait {r.seconds:.1f} s")
    assert "power button, powering off" in lab.console_text("node1", GUEST)
    assert hv.dom(GUEST)["node"] is None

    refused(hv.run("--yes", "domain", "reboot", GUEST), "not running on any node")
    refused(hv.run("--yes", "domain", "reset", GUEST), "not running on any node")


# -- console, info, live and offline migration ------------------------------------------


def test_console_info_and_migrations_of_a_real_guest(lab, hv, console):
    start_guest(lab, hv, "node1")

    doc = json.loads(hv.ok("-f", "json", "domain", "info", GUEST).out)
    assert (doc["state"], doc["node"], doc["definition"]) == ("running", "node1", "running")
    assert doc["memory_mib"] == {"running": 128, "conf": 128} and doc["drift"] == []
    tty = doc["consoles"][0]["path"]
    assert doc["consoles"][0]["type"] == "pty" and tty.startswith("/dev/pts/"), doc
    assert lab.exec("node1", "test", "-e", tty).returncode == 0     # the node's pty, as it said

    t0 = time.monotonic()
    term = console()
    term.expect(rf"{GUEST} runs on node1: its console follows .*leave with Ctrl-\]")
    term.expect(r"Escape character is \^\]")
    attached = time.monotonic() - t0
    term.ask("echo marker-$((6*7))-$(hostname)", rf"marker-42-{GUEST}")   # its shell answered
    before = guest_uptime(term)
    term.type("\x1d")                                              # Ctrl-]
    assert term.wait() == 0, term.seen.decode(errors="replace")[-2000:]
    REPORT.append(f"havirt domain console: attached in {attached:.1f} s (scan of 3 nodes + ssh -t)")

    t0 = time.monotonic()
    r = hv.yes("domain", "migrate", GUEST, "node2")
    assert f"{GUEST} moved from node1 to node2" in r.out, r
    assert lab.where(GUEST) == ["node2"]
    term = console()
    term.expect(rf"{GUEST} runs on node2")
    term.expect(r"Escape character is \^\]")
    after = guest_uptime(term)
    # the same guest, still up: its clock went on, and it never booted on node2
    assert after > before, (before, after, time.monotonic() - t0)
    assert not READY.search(lab.console_text("node2", GUEST))
    term.type("\x1d")
    assert term.wait() == 0

    hv.yes("domain", "migrate", GUEST, "node3", "--offline")
    assert lab.where(GUEST) == ["node3"]
    assert "power button, powering off" in lab.console_text("node2", GUEST)  # shut down gracefully
    wait_ready(lab, "node3")                                        # and booted afresh there
    steps = [(a["node"], a["remote"]) for a in hv.audit()]
    assert ("node2", f"virsh -c qemu:///system shutdown {GUEST}") in steps, steps
    assert steps[-1] == ("node3", f"virsh -c qemu:///system create /dev/stdin < conf/{GUEST}.xml")


# -- edit, define, undefine ---------------------------------------------------------------


def test_edit_of_a_real_guest_takes_effect_at_its_next_start(lab, hv, tmp_path):
    conf = hv.home / "conf" / f"{GUEST}.xml"
    original = conf.read_bytes()
    start_guest(lab, hv, "node1")

    editor = tmp_path / "editor"
    editor.write_text("#!/bin/sh\nsed -i 's/>128</>160</g' \"$1\"\n")
    editor.chmod(0o755)
    env = {**os.environ, "EDITOR": str(editor)}
    env.pop("VISUAL", None)
    p = subprocess.run(hv.argv("domain", "edit", GUEST), capture_output=True, text=True,
                       env=env, stdin=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 0, p
    assert "-  <memory unit='MiB'>128</memory>" in p.stdout
    assert "+  <memory unit='MiB'>160</memory>" in p.stdout
    assert "keeps its running definition until its next start" in p.stdout, p.stdout
    kept = list((hv.home / "conf" / ".history" / GUEST).glob("*-edit.xml"))
    assert len(kept) == 1 and kept[0].read_bytes() == original

    rows = {r["name"]: r for r in json.loads(hv.ok("-f", "json", "domain", "list").out)}
    assert rows[GUEST]["drift"] == ["memory"]
    doc = json.loads(hv.ok("-f", "json", "domain", "info", GUEST).out)
    assert doc["drift"] == ["memory 128 MiB running, 160 MiB in conf/"]

    # conf/ only: the guest still runs with 128 MiB
    assert "131072 KiB" in lab.virsh("node1", "dominfo", GUEST, check=True).stdout

    refused(hv.run("domain", "undefine", GUEST), f"{GUEST} is already running on node1")
    assert conf.exists()

    hv.yes("domain", "shutdown", GUEST, "--wait", "60")
    hv.yes("domain", "start", GUEST, "node2")
    info = lab.virsh("node2", "dominfo", GUEST, check=True).stdout
    assert re.search(r"Max memory:\s+163840 KiB", info), info
    doc = json.loads(hv.ok("-f", "json", "domain", "info", GUEST).out)
    assert doc["memory_mib"] == {"running": 160, "conf": 160} and doc["drift"] == []
    wait_ready(lab, "node2")
    hv.yes("domain", "shutdown", GUEST, "--wait", "60")

    r = hv.ok("domain", "undefine", GUEST)
    assert not conf.exists() and "removed conf/guest1.xml" in r.out, r
    r = hv.run("--yes", "domain", "start", GUEST, "node1")
    assert r.rc == 2 and "unknown domain" in r.err, r
    hv.ok("domain", "define", GUEST, "--file", str(kept[0]))
    assert conf.read_bytes() == original
