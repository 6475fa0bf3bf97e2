"""Real Linux guests (tests/lab/README.md: guests): Debian's kernel and a busybox
initramfs under TCG. They print a ready line on the serial console, run a shell
there, power off on the ACPI power button (virsh shutdown, virsh reboot) and
migrate live. Checked on the nodes: virsh, the console log, the console itself."""

from __future__ import annotations

import time
from pathlib import Path

from labkit import REPORT, wait_until

READY = "havirt-guest {} ready"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100        # utime + stime, in ticks of 10 ms


def test_real_guest_boots_answers_migrates_and_powers_off(lab, hv):
    for node in lab.nodes:                    # virsh console needs it (tty lock files)
        assert lab.exec(node, "test", "-d", "/run/lock").returncode == 0, node

    t0 = time.monotonic()
    hv.yes("domain", "start", "guest1", "node1")
    lab.create("node2", "guest2")             # by hand: both boot at the same time
    booted = {}
    for node, name in (("node1", "guest1"), ("node2", "guest2")):
        assert wait_until(lambda: READY.format(name) in lab.console_text(node, name), 90, 0.2), \
            f"{name} never printed its ready line:\n{lab.console_text(node, name)[-2000:]}"
        booted[name] = time.monotonic() - t0
    pids = {n: lab.node_pids(n, "qemu") for n in ("node1", "node2")}
    assert len(pids["node1"]) == len(pids["node2"]) == 1, pids
    before = {n: cpu_seconds(p[0]) for n, p in pids.items()}
    time.sleep(2)
    idle = {n: (cpu_seconds(p[0]) - before[n]) / 2 * 100 for n, p in pids.items()}
    REPORT.append(f"real guests (TCG, 128 MiB): ready line after {booted['guest1']:.1f} s and "
                  f"{booted['guest2']:.1f} s (booting together); idle CPU "
                  f"{idle['node1']:.1f} % and {idle['node2']:.1f} % of a core")

    # virsh reboot: libvirt presses the power button, the guest powers off, libvirt
    # resets it; meanwhile guest1 answers on its console and migrates
    lab.virsh("node2", "reboot", "guest2", check=True)

    # a shell on the serial console: what it prints is its own work, not the echo of the input
    out = lab.console("node1", "guest1", "echo marker-$((6*7))", "marker-42")
    assert "\nmarker-42" in out, out

    # live migration; the guest goes on where it was
    r = hv.run("--yes", "domain", "migrate", "guest1", "node3")
    assert r.rc == 0 and "guest1 moved from node1 to node3" in r.out, r
    assert lab.where("guest1") == ["node3"]
    out = lab.console("node3", "guest1", "echo moved-$((6*7))", "moved-42")
    assert "\nmoved-42" in out, out

    assert wait_until(lambda: lab.console_text("node2", "guest2").count(READY.format("guest2")) == 2,
                      90, 0.2), lab.console_text("node2", "guest2")[-2000:]
    assert "guest2: power button, powering off" in lab.console_text("node2", "guest2")
    assert lab.where("guest2") == ["node2"]

    # virsh shutdown: the power button again; the guest is gone within seconds
    t = time.monotonic()
    lab.virsh("node3", "shutdown", "guest1", check=True)
    assert wait_until(lambda: "guest1" not in lab.running("node3"), 10, 0.2), lab.all_running()
    took = time.monotonic() - t
    assert "guest1: power button, powering off" in lab.console_text("node3", "guest1")

    # havirt's own shutdown waits for it
    r = hv.run("--yes", "domain", "shutdown", "guest2", "--wait", "30")
    assert r.rc == 0, r
    assert lab.where("guest2") == []
    REPORT.append(f"real guest: virsh shutdown to gone in {took:.1f} s; havirt domain shutdown "
                  f"--wait in {r.seconds:.1f} s")
