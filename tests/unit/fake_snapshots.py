"""The fake cluster, taught snapshots and backups (remote/snapshots.py).

SnapStorage keeps each image's internal snapshots (printed by qemu-img info
as "snapshots") and plain files written on the nodes (a backup's
definition); SnapRunner answers the commands of snapshots and backups,
each first checked to be exactly what havirt's builder makes from its
arguments (as FakeRunner does for every other command).

Knobs a test may set:
  storage.snapshot(path, name, memory=False)   a snapshot in an image already
  storage.failing.add(path)                    a snapshot command on `path`, or a backup
                                               to `path`, fails
"""

from __future__ import annotations

from fake_storage import GIB, FakeImage, FakeStorage, parent
from fakes import FakeRunner

from havirt.errors import NodeUnreachable
from havirt.parse.domxml import parse_domain_xml
from havirt.parse.virsh import SHUT_OFF
from havirt.remote import snapshots as snap_remote
from havirt.remote.transport import Result

VM_STATE = 73217828          # bytes of memory a snapshot of a running lab guest held


class SnapStorage(FakeStorage):
    def __init__(self):
        super().__init__()
        self.snapshots: dict[str, list[dict]] = {}     # image -> qemu-img's "snapshots" entries
        self.files: dict[str, str] = {}                # other files written on the nodes
        self.changes: list[tuple[str, str]] = []       # (node, what) every change, in order

    def snapshot(self, path: str, name: str, memory: bool = False) -> None:
        shots = self.snapshots.setdefault(path, [])
        shots.append({"id": str(len(shots) + 1), "name": name, "vm-state-size": VM_STATE if memory else 0,
                      "date-sec": 1796386991 + len(shots), "date-nsec": 0, "vm-clock-sec": 0,
                      "vm-clock-nsec": 0})

    def names(self, path: str) -> list[str]:
        return [s["name"] for s in self.snapshots.get(path, [])]

    def sees(self, node: str, path: str) -> bool:
        if path in self.files:
            return node in self.mounts.get(parent(path), ())
        return super().sees(node, path)

    def _chain(self, path: str) -> list[dict]:
        chain = super()._chain(path)
        for info in chain:
            if self.snapshots.get(info["filename"]):
                info["snapshots"] = [dict(s) for s in self.snapshots[info["filename"]]]
        return chain

    def _img_remove(self, node, command) -> Result:
        (path,) = command.args
        if path in self.files and self.sees(node, path):
            del self.files[path]
            return Result(node, command.text(), 0)
        return super()._img_remove(node, command)

    def _img_copy(self, node, command) -> Result:
        res = super()._img_copy(node, command)
        if res.ok:
            self.changes.append((node, f"copy {command.args[0]} {command.args[2]}"))
        return res

    # -- qemu-img snapshot -c|-a|-d -----------------------------------------------------------
    def img_snapshot(self, node, command) -> Result:
        action, path, name = command.args
        text = command.text()
        if not self.sees(node, path) or path not in self.images:
            return Result(node, text, 1, "", f"qemu-img: Could not open '{path}': No such file\n")
        if path in self.failing:
            return Result(node, text, 1, "", f"qemu-img: Could not open '{path}': Failed to get "
                          f"\"write\" lock\nIs another process using the image [{path}]?\n")
        if action == "create":
            self.snapshot(path, name)
        elif name not in self.names(path):
            verb = "apply" if action == "revert" else "delete"
            return Result(node, text, 1, "", f"qemu-img: Could not {verb} snapshot '{name}': "
                          "snapshot not found\n")
        elif action == "delete":
            self.snapshots[path] = [s for s in self.snapshots[path] if s["name"] != name]
        self.changes.append((node, f"{action} {name} {path}"))
        return Result(node, text, 0)


class SnapRunner(FakeRunner):
    """FakeRunner, and the commands of snapshots and backups."""

    def run(self, node, command, stdin=None, timeout=None, on_output=None) -> Result:
        handler = {"img-snapshot": self._img_snapshot, "snapshot-create-as": self._snapshot_live,
                   "snap-delete-live": self._delete_live, "backup-live": self._backup_live,
                   "write-file": self._write_file}.get(command.op)
        if handler is None:
            return super().run(node, command, stdin, timeout, on_output)
        self.calls.append((node, command.text()))
        if node not in self.nodes:
            self._unexpected(f"command for unknown node {node}: {command.text()}")
        n = self.nodes[node]
        if not n.reachable:
            raise NodeUnreachable(node, "connect timed out after 5 s")
        return handler(n, command)

    def _same(self, command, expected) -> None:
        if command != expected:
            self._unexpected(f"{command.op} differs from havirt's own:\n{command.text()}\n---\n"
                             f"{expected.text()}")

    def _img_snapshot(self, n, command) -> Result:
        self._same(command, snap_remote.image_snapshot(*command.args))
        return self.storage.img_snapshot(n.name, command)

    def _running(self, n, name: str, command) -> Result | None:
        d = n.domains.get(name)
        if d is None or d.state == SHUT_OFF:
            return Result(n.name, command.text(), 1, "", f"error: failed to get domain '{name}'\n")
        return None

    def _snapshot_live(self, n, command) -> Result:
        words = command.argv[4:]
        if len(words) != 6:
            self._unexpected(f"{n.name}: unexpected command: {command.text()}")
        name, snap = words[1], words[3]
        self._same(command, snap_remote.snapshot_live(self.cfg, name, snap))
        failed = self._virsh(n, command) or self._running(n, name, command)
        if failed:
            return failed
        disks = [p for p in self._writable(n, name) if p in self.storage.images]
        raw = [p for p in disks if self.storage.images[p].format != "qcow2"]
        if raw:
            return Result(n.name, command.text(), 1, "", "error: unsupported configuration: internal "
                          f"snapshot for disk {raw[0]} unsupported for storage type raw\n")
        for i, path in enumerate(disks):
            self.storage.snapshot(path, snap, memory=i == 0)
        self.storage.changes.append((n.name, f"live create {snap} {name}"))
        return Result(n.name, command.text(), 0, f"Domain snapshot {snap} created\n")

    @staticmethod
    def _writable(n, name: str) -> list[str]:
        """The writable disks of the running definition (qemu's savevm leaves read-only ones out)."""
        return [d.path for d in parse_domain_xml(n.xml[name]).disk_specs if d.writes]

    def _delete_live(self, n, command) -> Result:
        name, snap = command.args
        self._same(command, snap_remote.delete_live(self.cfg, name, snap))
        failed = self._virsh(n, command) or self._running(n, name, command)
        if failed:
            return failed
        for path in n.domains[name].disks:
            if path in self.storage.snapshots:
                self.storage.snapshots[path] = [s for s in self.storage.snapshots[path] if s["name"] != snap]
        self.storage.changes.append((n.name, f"live delete {snap} {name}"))
        return Result(n.name, command.text(), 0)

    def _backup_live(self, n, command) -> Result:
        name, xml, targets, seconds = command.args
        self._same(command, snap_remote.backup_live(self.cfg, name, xml, targets, seconds))
        failed = self._virsh(n, command) or self._running(n, name, command)
        if failed:
            return failed
        there = [t for t in targets if t in self.storage.images or t in self.storage.files]
        if there:
            return Result(n.name, command.text(), 1, "", f"{there[0]} exists: not overwritten\n")
        if any(t in self.storage.failing for t in targets):
            return Result(n.name, command.text(), 1, "", "Job type: Failed Operation: Backup \n")
        for t in targets:
            self.storage.images[t] = FakeImage(virtual_size=GIB)
        self.storage.changes.append((n.name, f"backup {name} {' '.join(targets)}"))
        return Result(n.name, command.text(), 0, "Backup started\n")

    def _write_file(self, n, command) -> Result:
        path, text = command.args
        self._same(command, snap_remote.write_new_file(path, text))
        if path in self.storage.files or path in self.storage.images:
            return Result(n.name, command.text(), 1, "", f"{path} exists: not overwritten\n")
        if n.name not in self.storage.mounts.get(parent(path), ()) or path in self.storage.failing:
            return Result(n.name, command.text(), 1, "", f"sh: 1: cannot create {path}: Permission denied\n")
        self.storage.files[path] = text
        self.storage.changes.append((n.name, f"write {path}"))
        return Result(n.name, command.text(), 0)
