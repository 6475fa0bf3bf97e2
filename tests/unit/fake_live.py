"""The fake cluster's running domains changed in place: virsh setmem, setvcpus,
attach-device, detach-disk, detach-interface, blockresize, the wait scripts
(remote/live.py) and qemu-img resize, each first checked to be exactly what
havirt's builder makes from the words it carries (FakeRunner's rule).

A running domain's definition is node.xml[NAME] (what the scan's dumpxml
prints); these commands change it, and the domain's memory and vCPUs (what
domstats prints), as libvirt would.

Knobs a test may set on a FakeDomain:
  d.follows_balloon = False    the guest ignores setmem (the balloon stays where it is)
  d.lets_go = False            the guest never lets go of a device it is asked to detach
  d.attach_fails = "..."       attach-device fails with this error
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from fakes import FakeRunner

from havirt.remote import commands as remote
from havirt.remote import live
from havirt.remote.transport import Result

VERBS = ("setmem", "setvcpus", "attach-device", "detach-disk", "detach-interface", "blockresize")


def running(fake, node: str, name: str, xml: str, memory_mib: int | None = None, vcpus: int | None = None):
    """`name` runs on `node`, started from `xml` (its live definition), holding
    its currentMemory and current vCPUs unless told."""
    from havirt.parse.domxml import parse_domain_xml
    spec = parse_domain_xml(xml)
    d = fake.nodes[node].add(name, memory_mib=memory_mib or spec.memory_mib, vcpus=vcpus or spec.vcpus)
    fake.nodes[node].xml[name] = xml
    return d


def _maximum(root) -> tuple[int, int]:
    mem = root.find("memory")
    unit = {"MiB": 1, "KiB": 1 / 1024, "GiB": 1024}[mem.get("unit", "KiB")]
    return int(int(mem.text) * unit), int(root.find("vcpu").text)


class LiveRunner(FakeRunner):
    def run(self, node, command, stdin=None, timeout=None, on_output=None) -> Result:
        argv, base = command.argv, tuple(remote.virsh_argv(self.cfg))
        if command.op in ("wait-balloon", "wait-detached"):
            self.calls.append((node, command.text()))
            return self._wait(self.nodes[node], command)
        if command.op == "img-resize":
            self.calls.append((node, command.text()))
            return self._img_resize(node, command)
        if command.op in VERBS and argv[:3] == base:
            self.calls.append((node, command.text()))
            n = self.nodes[node]
            if not n.reachable:
                from havirt.errors import NodeUnreachable
                raise NodeUnreachable(node, "connect timed out after 5 s")
            return self._virsh(n, command) or self._live(n, command, argv[4:], stdin)
        return super().run(node, command, stdin, timeout, on_output)

    # -- virsh ... --live ------------------------------------------------------------------
    def _live(self, n, command, words, stdin) -> Result:
        verb, name = command.op, words[0]
        build = {"setmem": lambda: live.set_memory(self.cfg, name, int(words[1][:-1])),
                 "setvcpus": lambda: live.set_vcpus(self.cfg, name, int(words[1])),
                 "attach-device": lambda: live.attach_device(self.cfg, name),
                 "detach-disk": lambda: live.detach_disk(self.cfg, name, words[1]),
                 "detach-interface": lambda: live.detach_interface(self.cfg, name, words[1], words[3]),
                 "blockresize": lambda: live.block_resize(self.cfg, name, words[1], _mib(words[2]))}[verb]
        if command != build():
            self._unexpected(f"{n.name}: {verb} differs from havirt's own: {command.text()}")
        d = n.domains.get(name)
        if d is None or name not in n.xml:
            return Result(n.name, command.text(), 1, "", f"error: failed to get domain '{name}'\n")
        root = ET.fromstring(n.xml[name])
        out = getattr(self, "_" + verb.replace("-", "_"))(n, d, root, words, stdin)
        if isinstance(out, Result):
            return out
        n.xml[name] = ET.tostring(root, encoding="unicode")
        return Result(n.name, command.text(), 0, out + "\n")

    def _error(self, n, text) -> Result:
        return Result(n.name, "", 1, "", text)

    def _setmem(self, n, d, root, words, stdin):
        mib = int(words[1][:-1])
        if mib > _maximum(root)[0]:
            return self._error(n, "error: invalid argument: cannot set memory higher than max memory\n")
        if getattr(d, "follows_balloon", True):
            cur = root.find("currentMemory")
            cur.set("unit", "KiB")
            cur.text = str(mib * 1024)
            d.memory_mib = mib
        return ""

    def _setvcpus(self, n, d, root, words, stdin):
        want, top = int(words[1]), _maximum(root)[1]
        if want > top:
            return self._error(n, f"error: invalid argument: requested vcpus is greater than max "
                                  f"allowable vcpus for the live domain: {want} > {top}\n")
        root.find("vcpu").set("current", str(want))
        d.vcpus = want
        return ""

    def _attach_device(self, n, d, root, words, stdin):
        if getattr(d, "attach_fails", None):
            return self._error(n, f"error: Failed to attach device from /dev/stdin\nerror: {d.attach_fails}\n")
        el = ET.fromstring(stdin.decode())
        target = el.find("target")
        if target is not None and target.get("dev") in {t.get("dev") for t in root.iter("target")}:
            return self._error(n, "error: Failed to attach device from /dev/stdin\n"
                                  f"error: operation failed: target {target.get('dev')} already exists\n")
        root.find("devices").append(el)
        return "Device attached successfully"

    def _detach_disk(self, n, d, root, words, stdin):
        devices = root.find("devices")
        disk = next((x for x in devices.findall("disk") if x.find("target").get("dev") == words[1]), None)
        if disk is None:
            return self._error(n, f"error: No disk found whose source path or target is {words[1]}\n")
        if getattr(d, "lets_go", True):
            devices.remove(disk)
        return "Disk detached successfully"

    def _detach_interface(self, n, d, root, words, stdin):
        devices = root.find("devices")
        iface = next((x for x in devices.findall("interface")
                      if x.find("mac").get("address") == words[3]), None)
        if iface is None:
            return self._error(n, f"error: operation failed: no interface found with MAC {words[3]}\n")
        if getattr(d, "lets_go", True):
            devices.remove(iface)
        return "Interface detached successfully"

    def _blockresize(self, n, d, root, words, stdin):
        disk = next((x for x in root.iter("disk") if x.find("target").get("dev") == words[1]), None)
        path = disk.find("source").get("file") if disk is not None else None
        if path not in self.storage.images:
            return self._error(n, f"error: invalid argument: invalid path {words[1]} not assigned to domain\n")
        self.storage.images[path].virtual_size = _mib(words[2]) * 1024 ** 2
        return f"Block device '{words[1]}' is resized"

    # -- the wait scripts and qemu-img resize -------------------------------------------------
    def _wait(self, n, command) -> Result:
        builder = live.wait_balloon if command.op == "wait-balloon" else live.wait_detached
        if command != builder(self.cfg, *command.args):
            self._unexpected(f"{command.op} script differs from havirt's own: {command.text()}")
        late = re.search(r"\{ echo ([^{}]*) >&2; exit 1; \}", command.text()).group(1)
        name = command.args[0]
        d, xml = n.domains.get(name), n.xml.get(name, "")
        if d is None or not xml:
            return Result(n.name, command.text(), live.POLL_UNKNOWN, "",
                          f"error: failed to get domain '{name}'\n")
        if command.op == "wait-balloon":
            done = d.memory_mib == command.args[1]
        else:
            _, what, token, _ = command.args
            root = ET.fromstring(xml)
            there = ([t.get("dev") for t in root.iter("target")] if what == "disk"
                     else [m.get("address") for m in root.iter("mac")])
            done = token not in there
        return Result(n.name, command.text(), live.POLL_DONE if done else live.POLL_LATE,
                      "", "" if done else late.replace("'", "") + "\n")

    def _img_resize(self, node, command) -> Result:
        _, _, _, _, fmt, path, size = command.argv
        if command != live.resize_image(path, fmt, _mib(size)):
            self._unexpected(f"img-resize differs from havirt's own: {command.text()}")
        if path not in self.storage.images or not self.storage.sees(node, path):
            return Result(node, command.text(), 1, "", f"qemu-img: Could not open '{path}'\n")
        self.storage.images[path].virtual_size = _mib(size) * 1024 ** 2
        return Result(node, command.text(), 0, "")


def _mib(size: str) -> int:
    return int(size[:-1]) * (1024 if size.endswith("G") else 1)


POOL = "/srv/pool"
GIB = 1024 ** 3
V = "virsh -c qemu:///system"

# A domain as `virsh dumpxml` writes one: at most 1024 MiB and 2 vCPUs, started with 512 MiB and 1.
WEB1 = """<domain type='kvm'>
  <name>web1</name>
  <memory unit='MiB'>1024</memory>
  <currentMemory unit='MiB'>512</currentMemory>
  <vcpu placement='static' current='1'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/srv/pool/web1-1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""


def setup(fake, nodes=("node1", "node2"), run_on="node1", xml=WEB1):
    """Nodes sharing the pool main (POOL), web1 in conf/ with its image there,
    running on `run_on` (None: off everywhere)."""
    fake.runner_class = LiveRunner
    made = [fake.node(n) for n in nodes]
    fake.write_config(pools={"main": POOL})
    fake.storage.mount(POOL, *nodes)
    fake.storage.add(f"{POOL}/web1-1.qcow2", virtual_size=GIB)
    (fake.home / "conf" / "web1.xml").write_text(xml)
    if run_on:
        running(fake, run_on, "web1", xml)
    return made


def conf_text(fake, name="web1") -> str:
    return (fake.home / "conf" / f"{name}.xml").read_text()


def history(fake, name="web1") -> list:
    folder = fake.home / "conf" / ".history" / name
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def drift_of(fake, name="web1") -> list[str]:
    """The `drift` lines of `domain info` (a fresh scan that reads the running definition)."""
    import json
    rc, out, err = fake.havirt("-f", "json", "domain", "info", name)
    assert rc == 0, err
    return json.loads(out)["drift"]


def said_no(fake, args, code, fragment) -> str:
    """The command fails with one line holding `fragment`, having sent nothing
    but reads (the scan, qemu-img's read of the images), written no audit
    entry, and changed nothing in the home; returns that line."""
    from fakes import home_snapshot, is_scan
    before, sent, logged = home_snapshot(fake.home), len(fake.calls), fake.audit_lines()
    rc, out, err = fake.havirt(*args)
    assert rc == code, (rc, out, err)
    assert all(is_scan(c) or c.startswith("n=0\n") for _, c in fake.calls[sent:]), fake.calls[sent:]
    assert err.startswith("havirt: ") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert fragment in err, err
    assert fake.audit_lines() == logged and home_snapshot(fake.home)["conf"] == before["conf"]
    return err
