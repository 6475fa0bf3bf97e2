"""A fake cluster behind a fake runner.

The runner reads each command by what it is, never by parsing its text: an
argv must be `virsh -c URI VERB ...` and equal, op included, to what
havirt's builder in havirt.remote.commands makes for that verb and those
words; a script must be one of havirt's (scan, wait-off, dump-inactive)
and its text equal to what the builder makes from its args. It answers
with output in the format real virsh prints (see tests/fixtures/virsh),
and fails loudly on anything else: an unexpected command is recorded, and
the test fixture fails the test at teardown whatever the CLI made of the
exception (an exit code can hide it). The exact text of each command is
pinned, independently of the builders, by test_command_text.py.

Knobs a test may set:
  node.scan_stdout / node.scan_stderr   the scan session answers this text
                                        (after checking it is havirt's own script)
  node.libvirt_up = False               the scan, the wait-off poll and every
                                        argv virsh command fail as when libvirtd is down
  node.containers                       what the LXC driver (virsh.lxc_uri) runs there
  node.lxc = False                      the node has no LXC driver (offers no containers)
  node.lxc_broken                       the LXC driver answers this error instead of a list
  node.libvirt_stops_in_wait            libvirtd stops during a wait-off poll:
                                        the poll cannot tell (WAIT_UNKNOWN)
  runner.migrate_fails                  every live migration fails
  cluster.real_describe                 dry-run lines as the real runner prints them
  cluster.storage                       pools, images, block devices (fake_storage.py)
"""

from __future__ import annotations

import re
import resource
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from havirt.errors import NodeUnreachable
from havirt.parse.virsh import SHUT_OFF
from havirt.remote import commands as remote
from havirt.remote.transport import Result, Runner

STATE_CODES = {"running": 1, "paused": 3, SHUT_OFF: 5}
VIRSH_DOWN = ("error: failed to connect to the hypervisor\n"
              "error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': Connection refused\n")

# the commands that name one domain: verb -> havirt's builder
ONE_DOMAIN = {"shutdown": remote.shutdown, "destroy": remote.destroy,
              "domjobabort": lambda cfg, name, uri=None: remote.abort_job(cfg, name),
              "reboot": remote.reboot, "reset": lambda cfg, name, uri=None: remote.reboot(cfg, name, True, uri)}
NO_LXC = ("error: failed to connect to the hypervisor\n"
          "error: no connection driver available for lxc:///system\n")
SCRIPTS = {"scan": remote.scan_script, "wait-off": remote.wait_off,
           "dump-inactive": remote.dump_inactive}
# qemu-img, answered by the fake storage (fake_storage.py)
IMAGE_SCRIPTS = {"images": remote.images, "img-create": remote.create_image,
                 "img-overlay": remote.overlay_image, "img-copy": remote.copy_image,
                 "img-remove": remote.remove_image}


@dataclass
class FakeDomain:
    name: str
    memory_mib: int = 32
    vcpus: int = 1
    state: str = "running"
    reason: int = 1
    persistent: bool = False
    autostart: bool = False
    shuts_down: bool = True     # obeys ACPI shutdown
    boots: int = 1              # times it started (a reboot or reset adds one)
    disks: list[str] = field(default_factory=list)   # what its leases lock, with leases on


@dataclass
class FakeNode:
    name: str
    address: str = ""
    cpus: int = 4
    memory_mib: int = 8192
    hostname: str | None = None
    domains: dict[str, FakeDomain] = field(default_factory=dict)
    paths: set[str] = field(default_factory=set)
    reachable: bool = True
    libvirt_up: bool = True
    xml: dict[str, str] = field(default_factory=dict)   # what dumpxml prints
    scan_stdout: str | None = None
    scan_stderr: str = ""
    scan_exit: int = 0
    leases: bool = False          # lock_manager = "lockd" and virtlockd running
    lockspace: str | None = None  # file_lockspace_dir (a key of FakeRunner.lockspaces, if it exists)
    libvirt_stops_in_wait: bool = False   # libvirtd goes down while a wait-off polls
    containers: dict[str, FakeDomain] = field(default_factory=dict)   # the LXC driver's
    lxc: bool = True              # the LXC driver is there
    lxc_broken: str | None = None  # what `virsh -c lxc:///system list` fails with instead

    def add(self, name, **kw) -> FakeDomain:
        d = self.domains[name] = FakeDomain(name=name, **kw)
        return d

    def add_container(self, name, **kw) -> FakeDomain:
        d = self.containers[name] = FakeDomain(name=name, **kw)
        return d

    def table(self, uri_is_lxc: bool) -> dict[str, FakeDomain]:
        return self.containers if uri_is_lxc else self.domains


class UnexpectedCommand(AssertionError):
    pass


def is_scan(text: str) -> bool:
    """Whether the text of a call (FakeRunner.calls) is a scan."""
    return text.startswith("printf '@@hostname")


class FakeRunner(Runner):
    def __init__(self, app, nodes: dict[str, FakeNode], real_describe=False, lockspaces=None,
                 storage=None):
        from fake_storage import FakeStorage
        self.lockspaces = {} if lockspaces is None else lockspaces   # folder -> {file: text}
        self.storage = FakeStorage() if storage is None else storage
        self.app = app
        self.cfg = app.cfg
        self.nodes = nodes
        self.calls: list[tuple[str, str]] = []
        self.unexpected: list[str] = []
        self.migrate_fails = False
        self.real_describe = real_describe
        self._lock = threading.RLock()

    def describe(self, node):
        if not self.real_describe:
            return f"ssh root@{self.nodes[node].address or node}"
        from havirt.remote.backends import make_runner
        from havirt.remote.transport import Target
        targets = {n: Target(n, r.address, r.user, r.port) for n, r in self.app.state.nodes.items()}
        return make_runner(self.cfg.ssh, targets).describe(node)

    def run_many(self, commands):
        out = {}
        for node, command in commands.items():
            try:
                out[node] = self.run(node, command)
            except NodeUnreachable as e:
                out[node] = e
        return out

    def _unexpected(self, message: str):
        self.unexpected.append(message)
        raise UnexpectedCommand(message)

    # -- the commands havirt may send ----------------------------------------------
    def run(self, node, command, stdin=None, timeout=None, on_output=None) -> Result:
        with self._lock:        # commands sent at once (on threads) answered one at a time
            return self._answer(node, command, stdin, on_output)

    def _answer(self, node, command, stdin, on_output) -> Result:
        self.calls.append((node, command.text()))
        if node not in self.nodes:
            self._unexpected(f"command for unknown node {node}: {command.text()}")
        n = self.nodes[node]
        if not n.reachable:
            raise NodeUnreachable(node, "connect timed out after 5 s")
        if command.script is not None:
            return self._script(n, command)
        argv, uri = command.argv, command.argv[2] if len(command.argv) > 2 else None
        lxc = uri == self.cfg.lxc_uri
        base = tuple(remote.virsh_argv(self.cfg, uri=uri if lxc else None))
        verb, words = (argv[3], argv[4:]) if argv[:3] == base and len(argv) > 3 else (None, ())
        u = uri if lxc else None
        if verb in ONE_DOMAIN and len(words) == 1 and command == ONE_DOMAIN[verb](self.cfg, words[0], uri=u):
            return self._virsh(n, command, lxc) or self._power(n, verb, words[0], command, n.table(lxc))
        if command == remote.create(self.cfg, uri=u):
            return self._virsh(n, command, lxc) or self._create(n, command, stdin, n.table(lxc))
        if verb == "migrate" and len(words) >= 4:
            return self._virsh(n, command) or self._migrate(n, command, words[-4], on_output)
        self._unexpected(f"{node}: unexpected command: {command.text()}")

    @staticmethod
    def _virsh(n, command, lxc=False) -> Result | None:
        """virsh's answer when libvirtd (or the LXC driver) is not there (None: it is)."""
        if lxc and n.libvirt_up and not n.lxc:
            return Result(n.name, command.text(), 1, "", NO_LXC)
        return None if n.libvirt_up else Result(n.name, command.text(), 1, "", VIRSH_DOWN)

    def _script(self, n, command):
        build = SCRIPTS.get(command.op) or IMAGE_SCRIPTS.get(command.op)
        if build is None:
            self._unexpected(f"{n.name}: unexpected script ({command.op}): {command.text()}")
        expected = build(*command.args) if command.op in IMAGE_SCRIPTS else build(self.cfg, *command.args)
        if command != expected or (command.op == "scan" and command.args[2] != n.name):
            self._unexpected(f"{command.op} script differs from havirt's own:\n"
                             f"{command.text()}\n---\n{expected.text()}")
        if command.op in IMAGE_SCRIPTS:
            return self.storage.run(n.name, command)
        return {"scan": self._scan, "wait-off": self._wait_off,
                "dump-inactive": self._dumpxml}[command.op](n, command)

    def _wait_off(self, n, command):
        name, _, uri = command.args
        if n.libvirt_stops_in_wait:
            n.libvirt_up = False
        if not n.libvirt_up:     # the script relays what virsh said, then exits "cannot tell"
            return Result(n.name, command.text(), remote.WAIT_UNKNOWN, "", VIRSH_DOWN)
        d = n.table(uri == self.cfg.lxc_uri).get(name)
        off = d is None or d.state == SHUT_OFF
        return Result(n.name, command.text(), remote.WAIT_OFF if off else remote.WAIT_RUNNING)

    def _create(self, n, command, stdin, table):
        m = re.search(rb"<name>([^<]+)</name>", stdin or b"")
        if not m:
            self._unexpected("create without XML on stdin")
        name = m.group(1).decode()
        mem = re.search(rb"<memory unit='MiB'>(\d+)</memory>", stdin)
        vcpus = re.search(rb"<vcpu>(\d+)</vcpu>", stdin)
        disks = [d.decode() for d in re.findall(rb"<source (?:file|dev)='([^']+)'", stdin)]
        if n.leases:
            for other in self.nodes.values():
                held = [d for x in other.domains.values() if x.state != SHUT_OFF for d in x.disks]
                if other is not n and other.leases and other.lockspace == n.lockspace \
                        and set(held) & set(disks):
                    return Result(n.name, command.text(), 1, "", "error: Failed to create domain from "
                                  "/dev/stdin\nerror: resource busy: Lockspace resource "
                                  "'5e1b0c9a' is locked\n")
        table[name] = FakeDomain(name, memory_mib=int(mem.group(1)) if mem else 32,
                                 vcpus=int(vcpus.group(1)) if vcpus else 1, disks=disks)
        n.xml[name] = stdin.decode()      # what dumpxml of the running domain prints
        return Result(n.name, command.text(), 0, f"Domain '{name}' created from /dev/stdin\n")

    def _migrate(self, n, command, name, on_output):
        """A live migration of `name` to the node whose address its URI names."""
        text = command.text()
        for target in self.nodes.values():
            rec = self.app.state.nodes.get(target.name)
            if rec is None or command != remote.migrate(self.cfg, name, rec.address,
                                                        rec.user or self.cfg.ssh.user,
                                                        rec.port or self.cfg.ssh.port):
                continue
            if name not in n.domains:
                return Result(n.name, text, 1, "", f"error: failed to get domain '{name}'\n")
            if self.migrate_fails:
                return Result(n.name, text, 1, "", "error: operation failed: migration failed\n")
            target.domains[name] = n.domains.pop(name)
            if name in n.xml:
                target.xml[name] = n.xml.pop(name)
            if on_output:
                on_output("\rMigration: [100 %]")
            return Result(n.name, text, 0, "Migration: [100 %]\n")
        self._unexpected(f"{n.name}: migration to no known node: {text}")

    def _power(self, n, verb, name, command, table):
        d = table.get(name)
        if d is None or d.state == SHUT_OFF:
            return Result(n.name, command.text(), 1, "", f"error: Failed to {verb} domain '{name}'\n"
                          "error: Requested operation is not valid: domain is not running\n")
        if verb in ("reboot", "reset"):
            if d.state != "running":
                return Result(n.name, command.text(), 1, "", f"error: Failed to {verb} domain '{name}'\n"
                              "error: Requested operation is not valid: domain is not running\n")
            d.boots += 1
            return Result(n.name, command.text(), 0, f"Domain '{name}' is being {verb}ed\n"
                          if verb == "reboot" else f"Domain '{name}' was reset\n")
        if verb == "destroy" or (verb == "shutdown" and d.shuts_down):
            if d.persistent:
                d.state = SHUT_OFF
            else:
                del table[name]
        return Result(n.name, command.text(), 0, f"Domain '{name}' {verb}\n")

    def _dumpxml(self, n, command):
        (names,) = command.args      # None: every domain the node knows
        out = [f"@@xml {name}\n{xml}" for name, xml in sorted(n.xml.items())
               if names is None or name in names]
        return Result(n.name, command.text(), 0, "\n".join(out) + "\n")

    def _scan(self, n: FakeNode, command) -> Result:
        paths, dump_running, _ = command.args
        text = command.text()
        if n.scan_stdout is not None:
            return Result(n.name, text, n.scan_exit, n.scan_stdout, n.scan_stderr)
        out = [f"@@hostname\n{n.hostname or n.name}"]
        if not n.libvirt_up:
            out.append("@@virsh\n" + VIRSH_DOWN.rstrip("\n") + "\n@@virsh-exit\n1")
            return Result(n.name, text, remote.SCAN_FAILED, "\n".join(out) + "\n", "")
        out.append("@@virsh\n" + self._lxc_list(n) + "\n@@vm-connect\n\n@@version\nCompiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\n"
                   "Using API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.22\nRunning against daemon: 9.0.0\n")
        out.append(f"@@nodeinfo\nCPU model:           x86_64\nCPU(s):              {n.cpus}\n"
                   "CPU frequency:       2596 MHz\nCPU socket(s):       1\n"
                   f"Core(s) per socket:  {n.cpus}\nThread(s) per core:  1\nNUMA cell(s):        1\n"
                   f"Memory size:         {n.memory_mib * 1024} KiB\n")
        out.append("@@persistent\n" + "".join(f"{d.name}\n" for d in n.domains.values() if d.persistent))
        out.append("@@autostart\n" + "".join(f"{d.name}\n" for d in n.domains.values() if d.autostart))
        stats = []
        for d in n.domains.values():
            code = STATE_CODES[d.state]
            stats.append(f"Domain: '{d.name}'\n  state.state={code}\n  state.reason={d.reason}\n")
            if code != 5:
                stats.append(f"  balloon.current={d.memory_mib * 1024}\n"
                             f"  balloon.maximum={d.memory_mib * 1024}\n"
                             f"  vcpu.current={d.vcpus}\n  vcpu.maximum={d.vcpus}\n"
                             "  vcpu.0.state=1\n")
            stats.append("\n")
        out.append("@@domstats\n" + "".join(stats))
        out.append("@@end\n@@virsh-exit\n0")
        out.append(self._lxc_info(n))
        out.append(self._lease_probe(n))
        if paths:
            out.append("@@paths\n" + "\n".join(
                f"{1 if p in n.paths or self.storage.sees(n.name, p) else 0} {p}" for p in sorted(set(paths))))
        if dump_running is True:
            for d in [*n.domains.values(), *n.containers.values()]:
                if d.state != SHUT_OFF:
                    out.append(f"@@xml {d.name}\n{n.xml.get(d.name, '')}")
        elif dump_running:
            for name in sorted(set(dump_running)):     # dumpxml fails (silently) where undefined
                there = name in n.domains or name in n.containers
                out.append(f"@@xml {name}\n{n.xml.get(name, '') if there else ''}")
        return Result(n.name, text, 0, "\n".join(out) + "\n", "")

    @staticmethod
    def _lxc_list(n: FakeNode) -> str:
        """The LXC part of the scan's one virsh: what its `connect` said, its list."""
        if n.lxc_broken:          # the driver is there but fails to list
            return "@@lxc-connect\n\n@@lxc-list\n" + n.lxc_broken.rstrip("\n") + "\n@@lxc-end"
        if not n.lxc:
            return "@@lxc-connect\n" + NO_LXC + "\n@@lxc-list\n\n@@lxc-end"
        return "@@lxc-connect\n\n@@lxc-list\n" + "".join(f"{d.name}\n" for d in n.containers.values()) \
            + "\n@@lxc-end"

    @staticmethod
    def _lxc_info(n: FakeNode) -> str:
        """What remote.lxc_part prints after it: each container's dominfo."""
        if n.lxc_broken or not n.lxc:
            return ""
        out = []
        for d in n.containers.values():
            on = d.state != SHUT_OFF
            out.append(f"@@lxc-domain {d.name}\nId:             {4321 if on else '-'}\n"
                       f"Name:           {d.name}\nUUID:           6a1f1c52-3d3c-4b7e-9a59-0c7e1d2a9f10\n"
                       f"OS Type:        exe\nState:          {d.state}\nCPU(s):         {d.vcpus}\n"
                       f"CPU time:       0.1s\nMax memory:     {d.memory_mib * 1024} KiB\n"
                       f"Used memory:    {428 if on else 0} KiB\n"
                       f"Persistent:     {'yes' if d.persistent else 'no'}\n"
                       f"Autostart:      {'enable' if d.autostart else 'disable'}\n"
                       "Managed save:   no\nSecurity model: none\nSecurity DOI:   0\n")
        return "\n".join(out)

    def _lease_probe(self, n: FakeNode) -> str:
        """What remote.LEASE_PROBE prints on this node; writes its marker."""
        lines = ["@@leases", f"lock_manager={'lockd' if n.leases else ''}",
                 f"lockspace={n.lockspace or ''}", "auto_disk_leases=",
                 f"virtlockd={'yes' if n.leases else 'no'}",
                 f"lockd_loaded={'yes' if n.leases else 'no'}"]
        folder = self.lockspaces.get(n.lockspace) if n.lockspace else None
        if folder is not None:
            folder[f".havirt-lease-{n.name}"] = f"havirt-lease-mark {n.name} {n.hostname or n.name}"
            lines.append("marked=yes")
            lines += [f"seen={text}" for _, text in sorted(folder.items())]
        return "\n".join(lines)


def home_snapshot(home):
    """Bytes of var/state.yaml and of every file under conf/ (to prove nothing
    changed). The state's times are left out: a refusal after a scan records
    what the scan found (ops/work.py), and its times move on when the second
    does between two commands (a test compared them and failed now and then)."""
    import re
    from pathlib import Path
    home = Path(home)
    state = home / "var" / "state.yaml"
    conf = home / "conf"
    def content(p):
        # a file of gigabytes (test_endless_input.py) by what any write changes
        st = p.stat()
        return p.read_bytes() if st.st_size <= 1 << 24 else (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    return {
        "state": re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"TIME", state.read_bytes())
        if state.is_file() else None,   # a FIFO there is never read
        "conf": {str(p.relative_to(conf)): content(p)
                 for p in sorted(conf.rglob("*")) if p.is_file()} if conf.exists() else None,
    }


class TookTooLong(BaseException):
    """A command that would have gone on (a loop, a read that never ends):
    a BaseException, so that no `except Exception` turns it into an answer."""


@contextmanager
def time_limit(seconds: float, memory: int = 2 << 30):
    """Stop the block with TookTooLong after `seconds` (a timer signal to this
    thread), and let it take at most `memory` more bytes of address space
    (a read that never ends fails with MemoryError instead of taking the
    machine's memory: a timer signal cannot stop a read that never waits)."""
    def stop(signum, frame):
        raise TookTooLong(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, stop)
    limits = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (used + memory, limits[1]))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, limits)


def refused(fake, args, code, fragment, seconds=5.0):
    """The command fails with one line naming `fragment`, within `seconds`
    (stopped there if it would go on), and changes nothing in the home."""
    before = home_snapshot(fake.home)
    with time_limit(seconds):
        out, err = fake.refused(*args, code=code)     # nothing sent that changes a node
    assert err.startswith("havirt: ") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert fragment in err, err
    assert home_snapshot(fake.home) == before
    return err
