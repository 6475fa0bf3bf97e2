"""The fake cluster's storage: pool folders that nodes mount, the images in
them, block devices; and qemu-img as havirt runs it (remote.commands: images,
img-create, img-overlay, img-copy, img-remove), answering in qemu-img's
format. Every script is first checked to be havirt's own (FakeRunner).

Knobs a test may set:
  storage.mount(folder, *nodes)       the nodes that see a pool folder
  storage.add(path, ...)              an image there already
  storage.block(path, *nodes)         a block device those nodes see
  storage.failing.add(path)           making or removing `path` fails (qemu-img's error)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from havirt.remote.transport import Result

GIB = 1024 ** 3


@dataclass
class FakeImage:
    format: str = "qcow2"
    virtual_size: int = GIB
    backing: str | None = None
    backing_format: str | None = None


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


class FakeStorage:
    def __init__(self):
        self.mounts: dict[str, set[str]] = {}     # folder -> nodes that see it
        self.images: dict[str, FakeImage] = {}
        self.blocks: dict[str, set[str]] = {}     # block device -> nodes that see it
        self.failing: set[str] = set()
        self.made: list[str] = []                 # every image made, in order

    def mount(self, folder: str, *nodes: str) -> None:
        self.mounts.setdefault(folder, set()).update(nodes)

    def add(self, path: str, **kw) -> FakeImage:
        image = self.images[path] = FakeImage(**kw)
        return image

    def block(self, path: str, *nodes: str) -> None:
        self.blocks.setdefault(path, set()).update(nodes)

    def sees(self, node: str, path: str) -> bool:
        """Whether `node` sees `path`: a folder it mounts, an image in one, a block device."""
        if node in self.mounts.get(path, ()) or node in self.blocks.get(path, ()):
            return True
        return path in self.images and node in self.mounts.get(parent(path), ())

    # -- qemu-img -----------------------------------------------------------------------
    def run(self, node: str, command) -> Result:
        return getattr(self, "_" + command.op.replace("-", "_"))(node, command)

    def _chain(self, path: str) -> list[dict]:
        out, seen = [], set()
        while path and path not in seen:
            seen.add(path)
            image = self.images[path]
            info = {"virtual-size": image.virtual_size, "filename": path, "format": image.format,
                    "actual-size": 200704, "dirty-flag": False}
            if image.backing:
                info.update({"backing-filename": image.backing, "full-backing-filename": image.backing,
                             "backing-filename-format": image.backing_format})
            out.append(info)
            path = image.backing if image.backing in self.images else None
        return out

    def _section(self, node: str, n: int, path: str) -> str:
        if path in self.blocks and node in self.blocks[path]:
            return f"@@image {n}\n{path}\nblock\n"
        if not self.sees(node, path):
            return f"@@image {n}\n{path}\nmissing\n"
        return f"@@image {n}\n{path}\nfile\n{json.dumps(self._chain(path), indent=4)}\n"

    def _images(self, node, command) -> Result:
        pools, paths = command.args
        listed = [p for f in pools if node in self.mounts.get(f, ()) for p in sorted(self.images)
                  if parent(p) == f]
        text = "".join(self._section(node, i, p) for i, p in enumerate(listed + list(paths), 1))
        return Result(node, command.text(), 0, text)

    def _make(self, node, command, path, image) -> Result:
        if node not in self.mounts.get(parent(path), ()):
            return Result(node, command.text(), 1, "", f"qemu-img: {path}: Could not create "
                          f"'{path}': No such file or directory\n")
        if path in self.images:
            return Result(node, command.text(), 1, "", f"{path} exists: not overwritten\n")
        if path in self.failing:
            return Result(node, command.text(), 1, "", f"qemu-img: {path}: No space left on device\n")
        self.images[path] = image
        self.made.append(path)
        return Result(node, command.text(), 0)

    def _img_create(self, node, command) -> Result:
        path, size_mib = command.args
        return self._make(node, command, path, FakeImage(virtual_size=size_mib * 1024 ** 2))

    def _img_overlay(self, node, command) -> Result:
        path, backing, fmt = command.args
        if backing not in self.images:
            return Result(node, command.text(), 1, "", f"qemu-img: Could not open '{backing}'\n")
        return self._make(node, command, path, FakeImage(virtual_size=self.images[backing].virtual_size,
                                                         backing=backing, backing_format=fmt))

    def _img_copy(self, node, command) -> Result:
        source, _, path = command.args
        if source not in self.images:
            return Result(node, command.text(), 1, "", f"qemu-img: Could not open '{source}'\n")
        return self._make(node, command, path, FakeImage(virtual_size=self.images[source].virtual_size))

    def _img_remove(self, node, command) -> Result:
        (path,) = command.args
        if path not in self.images or path in self.failing or not self.sees(node, path):
            return Result(node, command.text(), 1, "", f"rm: cannot remove '{path}': Permission denied\n")
        del self.images[path]
        return Result(node, command.text(), 0)
