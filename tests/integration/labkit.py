"""Helpers of the integration tests: the lab seen from outside, havirt as a subprocess."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
LAB_SCRIPT = REPO / "tests" / "lab" / "lab"
LAB_ENV = REPO / "tests" / "lab" / "run" / "lab.env"
PYTHON = REPO / ".venv" / "bin" / "python"
HAVIRT = REPO / "havirt.py"
URI = "qemu:///system"
LXC_URI = "lxc:///system"     # libvirt's LXC driver: the lab's containers
HAVIRT_TIMEOUT = 120          # seconds any single havirt command may take here
ANOMALY = re.compile(r"^(CRITICAL|ERROR|WARNING) \S+ \S+: ")

# Lines printed at the end of the run (race counts, timings).
REPORT: list[str] = []


def read_env() -> dict[str, str]:
    env = {}
    for line in LAB_ENV.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip()
    return env


@dataclass(repr=False)
class Result:
    rc: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err

    def __repr__(self) -> str:  # shown in assertion messages
        return f"rc={self.rc} ({self.seconds:.1f} s)\n--- stdout\n{self.out}--- stderr\n{self.err}"


class Lab:
    """The lab cluster, seen from outside havirt."""

    # undone in this order within a chain; the chains run in parallel (the lab
    # runs the actions on one node one at a time, and refuses all but power-on
    # on a powered-off node, so any interleaving ends with the node up)
    FAULT_UNDO = (("power-on", "link-up"), ("sshd-thaw", "sshd-start"),
                  ("libvirtd-thaw", "libvirtd-start"))

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.dir = Path(env["LAB_DIR"])
        self.home = Path(env["LAB_HOME"])
        self.n = int(env["LAB_NODES"])
        self.nodes = [f"node{k}" for k in range(1, self.n + 1)]
        self.faulted: set[str] = set()
        self.leases_default = env.get("LAB_LEASES", "1") == "1"
        self.leases_changed: set[str] = set()
        self.volumes = [v for v in env.get("LAB_VOLUMES", "").split(",") if v]
        self.guests = [g for g in env.get("LAB_GUESTS", "").split(",") if g]
        self.containers = [c for c in env.get("LAB_CONTAINERS", "").split(",") if c]
        self.lockspace = Path(env["LAB_LOCKSPACE"]) if env.get("LAB_LOCKSPACE") else None

    @staticmethod
    def address(node: str) -> str:
        return f"10.231.0.{10 + int(node[4:])}"

    def xml(self, domain: str) -> Path:
        return self.dir / "xml" / f"{domain}.xml"

    # -- raw access ----------------------------------------------------------
    def exec(self, node: str, *cmd, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
        p = subprocess.run([str(LAB_SCRIPT), "exec", node, *map(str, cmd)], capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"lab exec {node} {' '.join(map(str, cmd))}: rc={p.returncode}\n"
                                 f"{p.stdout}{p.stderr}")
        return p

    def virsh(self, node: str, *args, timeout: float = 30, check: bool = False,
              uri: str = URI) -> subprocess.CompletedProcess:
        return self.exec(node, "virsh", "-q", "-c", uri, *args, timeout=timeout, check=check)

    def create(self, node: str, domain: str, xml: Path | None = None) -> None:
        """Start a domain by hand, behind havirt's back."""
        self.virsh(node, "create", str(xml or self.xml(domain)), check=True)

    def fault(self, node: str, action: str) -> None:
        self.faulted.add(node)
        p = subprocess.run([str(LAB_SCRIPT), "fault", node, action], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, f"lab fault {node} {action}: {p.stdout}{p.stderr}"

    def leases(self, node: str, on: bool) -> None:
        """Switch libvirt's leases on `node` ("all": every node); libvirtd restarts,
        running domains keep running. Put back by undo_faults (after every test)."""
        nodes = self.nodes if node == "all" else [node]
        self.leases_changed.update(nodes)
        p = subprocess.run([str(LAB_SCRIPT), "leases", node, "on" if on else "off"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, f"lab leases {node}: {p.stdout}{p.stderr}"
        state = self.status()
        assert all(state[n]["leases"] == ("on" if on else "off") for n in nodes), state

    def restore_leases(self, nodes=None) -> None:
        """Leases as the lab came up (LAB_LEASES), on `nodes` (default: those changed)."""
        nodes = sorted(self.leases_changed if nodes is None else nodes)
        for node in nodes:
            subprocess.run([str(LAB_SCRIPT), "leases", node, "on" if self.leases_default else "off"],
                           capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        self.leases_changed.difference_update(nodes)

    def status(self) -> dict[str, dict[str, str]]:
        """`lab status` per node: {"node1": {"sshd": "yes", "libvirtd": "yes",
        "running": "0", "leases": "on", ["power": "off"]}}."""
        p = subprocess.run([str(LAB_SCRIPT), "status"], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        out = {}
        for line in p.stdout.splitlines():
            words = line.split()
            if words and words[0].startswith("node"):
                out[words[0]] = dict(w.split("=", 1) for w in words[2:] if "=" in w)
        return out

    # -- real Linux guests -----------------------------------------------------
    def console_log(self, node: str, domain: str) -> Path:
        """What the guest printed on its serial console while it ran on `node`
        (libvirt's <log file> in the node's /var/log/libvirt/qemu/)."""
        return self.dir / node / "log" / "qemu" / f"{domain}-serial.log"

    def console_text(self, node: str, domain: str) -> str:
        try:
            return self.console_log(node, domain).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def console(self, node: str, domain: str, line: str, expect: str, timeout: float = 20) -> str:
        """Type `line` on the guest's serial console (`virsh console` on the node,
        through a pty as a person would) and wait for `expect`; return what was read."""
        master, slave = pty.openpty()
        p = subprocess.Popen([str(LAB_SCRIPT), "exec", node, "virsh", "-c", URI, "console", "--force",
                              domain], stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        buf = b""

        def read_until(pattern: bytes, seconds: float) -> bool:
            nonlocal buf
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if select.select([master], [], [], 0.1)[0]:
                    try:
                        buf += os.read(master, 4096)
                    except OSError:
                        return pattern in buf
                if pattern in buf:
                    return True
            return False
        try:
            assert read_until(b"Escape character", timeout), f"virsh console {domain} on {node}: {buf!r}"
            os.write(master, b"\r")
            time.sleep(0.3)
            os.write(master, line.encode() + b"\r")
            read_until(expect.encode(), timeout)
            os.write(master, b"\x1d")                 # ^]: leave the console
            p.wait(timeout=10)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)      # our own process group only
                p.wait()
            os.close(master)
        return buf.decode(errors="replace")

    # -- what really runs ------------------------------------------------------
    def running(self, node: str, uri: str = URI) -> set[str]:
        """Names of the domains active on `node`, says virsh on the node
        (`uri` LXC_URI: its containers)."""
        p = self.virsh(node, "list", "--name", uri=uri)
        assert p.returncode == 0, f"virsh -c {uri} list on {node} failed: {p.stderr}"
        return {line.strip() for line in p.stdout.splitlines() if line.strip()}

    def defined(self, node: str, uri: str = URI) -> set[str]:
        p = self.virsh(node, "list", "--all", "--name", uri=uri)
        assert p.returncode == 0, f"virsh -c {uri} list --all on {node} failed: {p.stderr}"
        return {line.strip() for line in p.stdout.splitlines() if line.strip()}

    def containers_where(self, name: str) -> list[str]:
        """Every node where the container `name` is active (virsh -c lxc:///system)."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            running = dict(zip(self.nodes, pool.map(lambda n: self.running(n, LXC_URI), self.nodes)))
        return sorted(n for n, names in running.items() if name in names)

    def all_running(self) -> dict[str, set[str]]:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            return dict(zip(self.nodes, pool.map(self.running, self.nodes)))

    def where(self, domain: str) -> list[str]:
        """Every node where `domain` is active (virsh on every node)."""
        return sorted(n for n, names in self.all_running().items() if domain in names)

    def holder(self, node: str) -> int:
        """The pid of the node's holder (the process that keeps its namespaces)."""
        return int((self.dir / node / "holder.pid").read_text())

    @staticmethod
    def node_pids(node: str, comm_prefix: str = "") -> list[int]:
        """Live processes inside the node's network namespace (zombies left out)."""
        p = subprocess.run(["ip", "netns", "pids", f"havirt-{node}"], capture_output=True,
                           text=True, timeout=10)
        pids = []
        for pid in p.stdout.split():
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if comm.startswith(comm_prefix) and stat != "Z":
                pids.append(int(pid))
        return pids

    def qemu_pids(self) -> list[int]:
        """qemu processes inside the lab nodes' network namespaces."""
        return [pid for node in self.nodes for pid in self.node_pids(node, "qemu")]

    # -- back to a clean lab ---------------------------------------------------
    def undo_faults(self, nodes=None) -> None:
        def undo(job):
            node, chain = job
            for action in chain:
                # a thaw fails when the daemon is not running: fine, the start follows
                subprocess.run([str(LAB_SCRIPT), "fault", node, action], capture_output=True,
                               timeout=60, stdin=subprocess.DEVNULL)
        jobs = [(n, chain) for n in (nodes or self.nodes) for chain in self.FAULT_UNDO]
        with ThreadPoolExecutor(len(jobs)) as pool:
            list(pool.map(undo, jobs))
        self.faulted.clear()
        self.restore_leases()

    def wipe(self, deadline: float = 20) -> list[str]:
        """Destroy and undefine every domain on every node; return what is left."""
        end = time.monotonic() + deadline

        def both(node):     # (uri, name) of the VMs and the containers a node knows
            return {(u, d) for u in (URI, LXC_URI) for d in self.defined(node, u)}

        def defined_all():
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                return {n: d for n, d in zip(self.nodes, pool.map(both, self.nodes)) if d}

        def kill(job):
            node, (uri, name) = job
            self.virsh(node, "destroy", name, uri=uri)
            self.virsh(node, "undefine", name, uri=uri)

        settled = False
        while True:
            left = defined_all()
            if left:
                jobs = [(n, d) for n, names in left.items() for d in names]
                with ThreadPoolExecutor(len(jobs)) as pool:
                    list(pool.map(kill, jobs))
                left = defined_all()
            if not left and not self.qemu_pids():
                if settled:
                    return []
                # a migration still under way could land a moment later: look once more
                settled = True
                time.sleep(0.1)
                continue
            settled = False
            if time.monotonic() > end:
                return [f"{n}: {sorted(d)}" for n, d in left.items()] + \
                    [f"qemu pids in lab netns: {self.qemu_pids()}"]
            time.sleep(0.2)


class Havirt:
    """havirt run as a subprocess against one home."""

    def __init__(self, home: Path, lab: Lab):
        self.home = home
        self.lab = lab
        self.procs: list[subprocess.Popen] = []

    def argv(self, *args) -> list[str]:
        return [str(PYTHON), str(HAVIRT), "--home", str(self.home), *map(str, args)]

    def run(self, *args, timeout: float = HAVIRT_TIMEOUT) -> Result:
        t0 = time.monotonic()
        p = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, cwd=str(self.home))
        return Result(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)

    def popen(self, *args) -> subprocess.Popen:
        """Start havirt in the background (killed at teardown if still running)."""
        p = subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, stdin=subprocess.DEVNULL, cwd=str(self.home),
                             start_new_session=True)
        p.started = time.monotonic()
        self.procs.append(p)
        return p

    @staticmethod
    def wait(p: subprocess.Popen, timeout: float = HAVIRT_TIMEOUT) -> Result:
        out, err = p.communicate(timeout=timeout)
        return Result(p.returncode, out, err, time.monotonic() - p.started)

    def ok(self, *args, **kw) -> Result:
        r = self.run(*args, **kw)
        assert r.rc == 0, f"havirt {' '.join(map(str, args))} failed: {r}"
        return r

    def yes(self, *args, **kw) -> Result:
        return self.ok("--yes", *args, **kw)

    # -- files -----------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.home / "var" / "state.yaml"

    @property
    def audit_file(self) -> Path:
        return self.home / "var" / "audit.log"

    def state(self) -> dict:
        return yaml.safe_load(self.state_file.read_text())

    def dom(self, name: str) -> dict:
        return (self.state().get("domains") or {}).get(name) or {}

    def audit(self) -> list[dict]:
        if not self.audit_file.exists():
            return []
        return [json.loads(line) for line in self.audit_file.read_text().splitlines() if line]

    def configure(self, **sections) -> None:
        """Merge {section: {key: value}} into the home's config.yaml."""
        path = self.home / "config.yaml"
        cfg = yaml.safe_load(path.read_text())
        for section, values in sections.items():
            if isinstance(values, dict):
                cfg.setdefault(section, {}).update(values)
            else:
                cfg[section] = values
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)   # our own process group only
                except ProcessLookupError:
                    pass
                p.communicate()


def make_home(lab: Lab, path: Path, add_nodes: bool = True, **config) -> Havirt:
    """A home with the lab's config.yaml (changed by `config`, as Havirt.configure
    takes it, before any node is added) and conf/."""
    (path / "conf").mkdir(parents=True)
    shutil.copy(lab.home / "config.yaml", path / "config.yaml")
    for xml in sorted((lab.home / "conf").glob("*.xml")):
        shutil.copy(xml, path / "conf" / xml.name)
    hv = Havirt(path, lab)
    if config:
        hv.configure(**config)
    if add_nodes:
        # through the real CLI, all at once (the home's lock serialises them)
        procs = {n: hv.popen("node", "add", n, "--address", lab.address(n)) for n in lab.nodes}
        for node, p in procs.items():
            r = hv.wait(p, timeout=60)
            assert r.rc == 0, f"node add {node} failed: {r}"
        assert sorted(hv.state()["nodes"]) == lab.nodes
    return hv


def refused(r: Result, *words) -> None:
    """Exit 3, one `havirt: refused ...` line naming every word."""
    assert r.rc == 3, r
    assert r.err.startswith("havirt: refused"), r
    for w in words:
        assert w in r.err, f"{w!r} not in: {r}"


def anomaly_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if ANOMALY.match(line)]


def wait_until(predicate, timeout: float, interval: float = 0.05):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            return value
        time.sleep(interval)
