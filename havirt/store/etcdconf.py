"""conf/ in etcd: P/conf/NAME.xml, and the history in P/history/NAME/ENTRY
(ENTRY named as in conf/.history/NAME/: STAMP-ACTION.xml). A change and the
version it replaces are written in one transaction, which holds only while
the definition is as it was read and the lock is this process's."""

from __future__ import annotations

from havirt.errors import HavirtError, UsageError
from havirt.names import check_name
from havirt.store import etcdclient as e
from havirt.store.conf import Conf, history_entry, stamp
from havirt.store.files import MAX_XML


class EtcdConf(Conf):
    def __init__(self, store):
        self.store = store                  # etcd.EtcdStore: its write() holds under the lock only
        self.etcd = store.etcd
        self.prefix = store.prefix
        self.label = f"etcd {self.prefix}/conf/"
        self._all: dict[str, bytes] | None = None     # every definition, while load_all reads them

    def key(self, name: str) -> str:
        return f"{self.prefix}/conf/{check_name('domain', name)}.xml"

    def where(self, name: str) -> str:
        return f"etcd {self.key(name)}"

    def where_raw(self, entry: str) -> str:
        return f"etcd {self.prefix}/conf/{entry}.xml"

    def shown(self, name: str) -> str:
        return self.where(name)

    def _read(self, keys_only: bool) -> dict[str, bytes]:
        """Every NAME.xml under P/conf/, by entry name (one range)."""
        kvs, _ = self.etcd.range(f"{self.prefix}/conf/", prefix=True, keys_only=keys_only)
        top = len(self.prefix) + len("/conf/")
        out = {kv["key"].decode(errors="replace")[top:]: kv["value"] for kv in kvs}
        return {k[:-4]: v for k, v in out.items() if k.endswith(".xml") and "/" not in k}

    def entries(self) -> list[str]:
        return sorted(self._all if self._all is not None else self._read(keys_only=True))

    def raw(self, name: str) -> bytes | None:
        if self._all is not None:
            value = self._all.get(check_name("domain", name))
        else:
            kvs, _ = self.etcd.range(self.key(name))
            value = kvs[0]["value"] if kvs else None
        if value is not None and len(value) > MAX_XML:
            raise HavirtError(f"{self.where(name)}: larger than havirt reads from a definition")
        return value

    def load_all(self):
        """Every definition read in one request, not one each (see Conf.load_all)."""
        self._all = self._read(keys_only=False)
        try:
            return super().load_all()
        finally:
            self._all = None

    def _write(self, compare: list, ops: list, what: str) -> None:
        self.store.write(compare, ops, what)

    def write(self, name: str, text: str | bytes) -> str:
        self._write([], [e.put(self.key(name), text)], self.where(name))
        return self.where(name)

    def _same(self, name: str, before: bytes | None) -> dict:
        return e.holds(self.key(name), before) if before is not None else e.absent(self.key(name))

    def _entry(self, name: str, action: str) -> str:
        """A history key not taken yet (STAMP.N-ACTION.xml for the Nth in a second)."""
        when = stamp()
        folder = f"{self.prefix}/history/{name}/"
        kvs, _ = self.etcd.range(folder + when, prefix=True, keys_only=True)
        taken = {kv["key"].decode(errors="replace") for kv in kvs}
        for n in range(1, 1000):
            key = folder + history_entry(when, n, action)
            if key not in taken:
                return key
        raise HavirtError(f"etcd {folder}: too many versions in one second")

    def replace(self, name: str, before: bytes | None, after: bytes, action: str) -> str | None:
        ops, compare, kept = [e.put(self.key(name), after)], [self._same(name, before)], None
        if before is not None:
            kept = self._entry(name, action)
            compare.append(e.absent(kept))
            ops.append(e.put(kept, before))
        self._write(compare, ops, self.where(name))
        return f"etcd {kept}" if kept else None

    def retire(self, name: str, before: bytes, action: str, check=None) -> str:
        if check is not None:
            check()
        kept = self._entry(name, action)
        self._write([self._same(name, before), e.absent(kept)],
                    [e.put(kept, before), e.delete(self.key(name))], self.where(name))
        return f"etcd {kept}"

    def history(self) -> dict[str, list[tuple[str, bytes]]]:
        kvs, _ = self.etcd.range(f"{self.prefix}/history/", prefix=True, sort_target="KEY",
                                 sort_order="ASCEND")
        top = len(self.prefix) + len("/history/")
        out: dict[str, list[tuple[str, bytes]]] = {}
        for kv in kvs:
            name, _, entry = kv["key"].decode(errors="replace")[top:].partition("/")
            out.setdefault(name, []).append((entry, kv["value"]))
        return out

    def put_history(self, name: str, entry: str, raw: bytes) -> None:
        key = f"{self.prefix}/history/{check_name('domain', name)}/{entry}"
        if "/" in entry or not entry.endswith(".xml"):
            raise UsageError(f"{entry!r}: not a history entry")
        self._write([e.absent(key)], [e.put(key, raw)], f"etcd {key}")
