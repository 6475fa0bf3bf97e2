"""config.yaml: read strictly and validated (every key, its type, its range)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from havirt.errors import ConfigError
from havirt.parse import numbers as n
from havirt.store import strictyaml
from havirt.store.files import MAX_CONFIG
from havirt.store.storeconfig import StoreConfig, store_config

HOST_KEY_POLICIES = ("reject", "accept-new", "ignore")
SSH_BACKENDS = ("paramiko", "openssh")      # remote/transport.py: paramiko_ssh.py, openssh.py


# Every key with its type, default and, for numbers, its range (parse/numbers.py:
# the one the command line and the state use too); config.sample.yaml documents them.
SCHEMA: dict[str, object] = {
    "dryrun": (bool, True),
    "lock_timeout": ((int, float), 60, n.LOCK_WAIT),
    "ssh": {
        "user": (str, "root"),
        "port": (int, 22, n.PORT),
        "identity_file": ((str, type(None)), None),
        "known_hosts_file": ((str, type(None)), "~/.ssh/known_hosts"),
        "host_key_policy": (str, "reject"),
        "connect_timeout": ((int, float), 5, n.SECONDS),
        "command_timeout": ((int, float), 60, n.SECONDS),
        "parallel": (int, 128, n.PARALLEL),    # see config.sample.yaml
        "ssh_config": ((str, type(None)), "~/.ssh/config"),
        "backend": (str, "paramiko"),
        # seconds, or no: checked by _check_values, with one message for every wrong value
        "persist": (object, 600),
    },
    "virsh": {
        "uri": (str, "qemu:///system"),
        "lxc_uri": (str, "lxc:///system"),
        "command": (str, "virsh"),
    },
    "reserve": {
        "memory_mib": (int, 1024, n.MEMORY_MIB),
        "vcpu_ratio": ((int, float), 4.0, n.VCPU_RATIO),
    },
    "balance": {
        "min_gain": ((int, float), 0.01, n.MIN_GAIN),
        "max_moves": ((int, type(None)), 20, n.MOVES),
        "n_plus_1": (bool, True),
        "weights": {
            "memory": ((int, float), 1.0, n.WEIGHT),
            "vcpu": ((int, float), 0.5, n.WEIGHT),
        },
    },
    "migrate": {
        "timeout": ((int, float), 600, n.SECONDS),
        "unsafe": (bool, False),
    },
    "recover": {
        "enabled": (bool, False),
        "after": (int, 3, n.SCANS),
    },
    "fence": ((dict, type(None)), None),     # checked by _fences (node names are its keys)
    "pools": ((dict, type(None)), None),     # checked by _pools (pool names are its keys)
    "metrics": {
        "textfile": ((str, type(None)), None),
    },
    "store": {
        "backend": (str, "files"),
        "endpoints": ((list, type(None)), None),     # checked by _store: a list of URLs
        "prefix": (str, "/havirt"),
        "ca": ((str, type(None)), None),
        "cert": ((str, type(None)), None),
        "key": ((str, type(None)), None),
        "lock_ttl": (int, 30, n.LOCK_TTL),
    },
}
# fence: NODE: {power_off: COMMAND, power_status: COMMAND, off_when: REGEX, timeout: SECONDS}
# (not `off:` as a key: YAML 1.1 reads a bare off as false)
FENCE_KEYS = {"power_off": str, "power_status": str, "off_when": str, "timeout": (int, float)}
FENCE_PLACEHOLDERS = ("node", "address")


def _type_name(t) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string",
             type(None): "null", list: "a list"}
    return " or ".join(names.get(x, x.__name__) for x in ts)


def _merge(path: str, where: str, schema: dict, data, out: dict) -> None:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {where or 'top level'} must be a mapping")
    for key in data:
        if key not in schema:
            allowed = ", ".join(sorted(schema))
            name = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"{path}: unknown key '{name}' (allowed here: {allowed})")
    for key, spec in schema.items():
        name = f"{where}.{key}" if where else key
        if isinstance(spec, dict):
            out[key] = {}
            _merge(path, name, spec, data.get(key), out[key])
            continue
        types, default, *rng = spec
        value = data.get(key, default)
        ok_types = types if isinstance(types, tuple) else (types,)
        # bool is an int in Python: never accept true/false where a number is meant.
        # (object: any value, which _check_values checks.)
        if object in ok_types:
            ok = True
        elif isinstance(value, bool) and bool not in ok_types:
            ok = False
        else:
            ok = isinstance(value, ok_types)
        if ok and isinstance(value, float) and not math.isfinite(value) and object not in ok_types:
            ok = False
        if not ok:
            raise ConfigError(
                f"{path}: key '{name}' must be {_type_name(types)}, not {value!r}")
        if rng and value is not None:
            _in_range(path, name, value, rng[0])
        out[key] = value


def _in_range(path, name: str, value, rng) -> None:
    if value not in rng:
        raise ConfigError(f"{path}: key '{name}' must be {rng}, not {_number(value)}")


def _number(value) -> str:
    """A number in a message: a huge one cut short."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} digits)"


@dataclass
class SSHConfig:
    user: str
    port: int
    identity_file: str | None
    known_hosts_file: str | None
    host_key_policy: str
    connect_timeout: float
    command_timeout: float
    parallel: int
    ssh_config: str | None
    backend: str = "paramiko"
    persist: int = 600          # openssh: seconds an idle shared connection stays (0: none)


@dataclass
class Config:
    path: str
    dryrun: bool
    lock_timeout: float
    ssh: SSHConfig
    virsh_uri: str
    virsh_command: str
    reserve_mib: int
    vcpu_ratio: float
    balance_min_gain: float
    balance_max_moves: int | str        # "none": no limit
    balance_n_plus_1: bool
    migrate_timeout: float
    migrate_unsafe: bool
    metrics_textfile: str | None = None   # Prometheus text file every scan writes
    lxc_uri: str = "lxc:///system"        # libvirt's LXC driver on every node (containers)
    recover_enabled: bool = False
    recover_after: int = 3
    fence: dict = field(default_factory=dict)   # node -> Fence
    pools: dict = field(default_factory=dict)   # pool name -> its folder (absolute, normalised)
    balance_weights: tuple[float, float] = (1.0, 0.5)   # (memory, vcpu) of the imbalance score
    store: StoreConfig = field(default_factory=StoreConfig)

    def pool_of(self, path: str) -> str | None:
        """The pool whose folder holds the file `path` (directly), or None."""
        folder = os.path.dirname(os.path.normpath(path))
        return next((name for name, f in self.pools.items() if f == folder), None)


@dataclass
class Fence:
    """How to power a node off from the admin host, and to see that it is off.
    Commands are argv templates ({node}, {address} filled in per argument,
    never through a shell)."""

    power_off: list[str]
    power_status: list[str]
    off_when: re.Pattern
    timeout: float

    def argv(self, which: str, node: str, address: str) -> list[str]:
        return [a.format(node=node, address=address) for a in getattr(self, which)]


def _template(text: str) -> list[str]:
    """A fence command as argv templates: split like a shell would, each
    argument taking {node} and {address} and nothing else (no attribute,
    index, conversion or format spec: str.format would run them all).
    Raises ValueError saying what is wrong."""
    import shlex
    import string
    argv = shlex.split(text)
    for arg in argv:
        for _, name, spec, conversion in string.Formatter().parse(arg):
            if name is not None and (name not in FENCE_PLACEHOLDERS or spec or conversion):
                field = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
                raise ValueError(f"{{{field}}} is not a placeholder")
    return argv


def _fences(path: Path, data) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: 'fence' must be a mapping of node name to its commands")
    from havirt.names import check_name
    out = {}
    for node, spec in data.items():
        where = f"fence.{node}"
        try:
            check_name("node", str(node))
        except Exception as e:
            raise ConfigError(f"{path}: key '{where}': {e}") from None
        if not isinstance(spec, dict) or not {"power_off", "power_status"} <= set(spec):
            raise ConfigError(f"{path}: key '{where}' needs 'power_off' and 'power_status' commands")
        for key, value in spec.items():
            if key not in FENCE_KEYS:
                raise ConfigError(f"{path}: unknown key '{where}.{key}' (allowed here: "
                                  f"{', '.join(FENCE_KEYS)})")
            if not isinstance(value, FENCE_KEYS[key]) or isinstance(value, bool):
                raise ConfigError(f"{path}: key '{where}.{key}' must be "
                                  f"{_type_name(FENCE_KEYS[key])}, not {value!r}")
        argvs = {}
        for key in ("power_off", "power_status"):
            try:
                argvs[key] = _template(spec[key])
            except ValueError as e:
                raise ConfigError(f"{path}: key '{where}.{key}': not a command template "
                                  f"({e}; placeholders: {{node}}, {{address}})") from None
            if not argvs[key]:
                raise ConfigError(f"{path}: key '{where}.{key}' is empty")
        try:
            pattern = re.compile(spec.get("off_when", r"\boff\b"), re.IGNORECASE)
        except re.error as e:
            raise ConfigError(f"{path}: key '{where}.off_when': not a regular expression ({e})") from None
        timeout = spec.get("timeout", 60)
        _in_range(path, f"{where}.timeout", timeout, n.SECONDS)
        out[str(node)] = Fence(argvs["power_off"], argvs["power_status"], pattern, float(timeout))
    return out


def _pools(path: Path, data) -> dict[str, str]:
    """pools: {NAME: /folder}: folders for disk images, one inside no other."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: 'pools' must be a mapping of pool name to its folder")
    from havirt.names import check_name
    out: dict[str, str] = {}
    for name, folder in data.items():
        try:
            check_name("pool", str(name))
        except Exception as e:
            raise ConfigError(f"{path}: key 'pools.{name}': {e}") from None
        if not isinstance(folder, str) or not folder.startswith("/") \
                or any(ord(c) < 32 for c in folder):
            raise ConfigError(f"{path}: key 'pools.{name}' must be an absolute folder, "
                              f"not {folder!r}")
        folder = os.path.normpath(folder)
        if folder == "/":
            raise ConfigError(f"{path}: key 'pools.{name}': / cannot be a pool")
        for other, theirs in out.items():
            if os.path.commonpath([folder, theirs]) in (folder, theirs):
                raise ConfigError(f"{path}: pools {other} ({theirs}) and {name} ({folder}) "
                                  "overlap: a pool cannot hold another")
        out[str(name)] = folder
    return out


def _expand(p: str | None) -> str | None:
    return os.path.expanduser(p) if p else p


def _read(path: Path) -> dict:
    """config.yaml as a mapping (a missing file: every default). UTF-8, no
    anchors or aliases, no key twice (strictyaml)."""
    text = strictyaml.read_text(path, ConfigError, MAX_CONFIG)
    if text is None:
        return {}
    try:
        return strictyaml.load(text) or {}
    except strictyaml.Refused as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        line = strictyaml.error_line(e)
        raise ConfigError(f"{path}:{f' line {line}' if line else ''} is not valid YAML") from e


def metrics_name_ok(name: str) -> bool:
    """The metrics file (metrics.textfile, --metrics) is named *.prom."""
    return Path(name).name.endswith(".prom") and Path(name).name != ".prom"


def _check_values(path: Path, merged: dict) -> None:
    """What the types and ranges do not say: choices, a valid user name, a
    metrics file named as node_exporter wants it."""
    s = merged["ssh"]
    if s["host_key_policy"] not in HOST_KEY_POLICIES:
        raise ConfigError(f"{path}: key 'ssh.host_key_policy' must be one of "
                          f"{', '.join(HOST_KEY_POLICIES)}, not {s['host_key_policy']!r}")
    if s["backend"] not in SSH_BACKENDS:
        raise ConfigError(f"{path}: key 'ssh.backend' must be one of "
                          f"{', '.join(SSH_BACKENDS)}, not {s['backend']!r}")
    persist = s["persist"]
    if persist is False or persist == "no":     # YAML reads a bare no as false
        s["persist"] = 0
    elif isinstance(persist, bool) or not isinstance(persist, int) or persist not in n.PERSIST:
        raise ConfigError(f"{path}: key 'ssh.persist' must be seconds ({n.PERSIST}), or no, "
                          f"not {_number(persist)}")
    from havirt.names import check_user
    try:
        check_user(s["user"])
    except Exception as e:
        raise ConfigError(f"{path}: key 'ssh.user': {e}") from None
    weights = merged["balance"]["weights"]
    if weights["memory"] == 0 and weights["vcpu"] == 0:
        raise ConfigError(f"{path}: keys 'balance.weights.memory' and 'balance.weights.vcpu' cannot "
                          "both be 0 (the score would be 0 whatever the placement)")
    _check_uris(path, merged["virsh"])
    textfile = merged["metrics"]["textfile"]
    if textfile is not None and not metrics_name_ok(textfile):
        raise ConfigError(f"{path}: key 'metrics.textfile' must name a file that ends in .prom "
                          f"(node_exporter's textfile collector reads no other), not {textfile!r}")


# A libvirt URI as the scan's one virsh takes it inside its command string
# (remote.SCAN_VIRSH): nothing that virsh's own parser would split or quote.
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s'\"\\;#]*")


def _check_uris(path: Path, v: dict) -> None:
    for key in ("uri", "lxc_uri"):
        if not URI.fullmatch(v[key]):
            raise ConfigError(f"{path}: key 'virsh.{key}' must be a libvirt URI such as "
                              f"{SCHEMA['virsh'][key][1]}, without spaces, quotes, ';' or '#', "
                              f"not {v[key]!r}")
    if v["uri"] == v["lxc_uri"]:
        raise ConfigError(f"{path}: keys 'virsh.uri' and 'virsh.lxc_uri' must name two drivers "
                          f"(virtual machines, containers), not both {v['uri']!r}")


def load_config(path: Path) -> Config:
    """Read and validate config.yaml; a missing file means every default."""
    merged: dict = {}
    data = _read(path)
    fence = data.pop("fence", None) if isinstance(data, dict) else None
    pools = data.pop("pools", None) if isinstance(data, dict) else None
    _merge(str(path), "", SCHEMA, data, merged)
    _check_values(path, merged)
    s = merged["ssh"]
    identity = _expand(s["identity_file"])
    if identity and not os.path.isfile(identity):
        raise ConfigError(f"{path}: key 'ssh.identity_file': no such file: {identity}")
    return Config(
        path=str(path),
        dryrun=merged["dryrun"],
        lock_timeout=float(merged["lock_timeout"]),
        ssh=SSHConfig(
            user=s["user"], port=s["port"], identity_file=identity,
            known_hosts_file=_expand(s["known_hosts_file"]),
            host_key_policy=s["host_key_policy"],
            connect_timeout=float(s["connect_timeout"]),
            command_timeout=float(s["command_timeout"]),
            parallel=s["parallel"], ssh_config=_expand(s["ssh_config"]),
            backend=s["backend"], persist=s["persist"],
        ),
        virsh_uri=merged["virsh"]["uri"],
        virsh_command=merged["virsh"]["command"],
        lxc_uri=merged["virsh"]["lxc_uri"],
        reserve_mib=merged["reserve"]["memory_mib"],
        vcpu_ratio=float(merged["reserve"]["vcpu_ratio"]),
        balance_min_gain=float(merged["balance"]["min_gain"]),
        balance_max_moves=merged["balance"]["max_moves"] if merged["balance"]["max_moves"] is not None
        else "none",
        balance_n_plus_1=merged["balance"]["n_plus_1"],
        balance_weights=(float(merged["balance"]["weights"]["memory"]),
                         float(merged["balance"]["weights"]["vcpu"])),
        migrate_timeout=float(merged["migrate"]["timeout"]),
        migrate_unsafe=merged["migrate"]["unsafe"],
        recover_enabled=merged["recover"]["enabled"],
        recover_after=merged["recover"]["after"],
        fence=_fences(path, fence),
        pools=_pools(path, pools),
        metrics_textfile=_expand(merged["metrics"]["textfile"]),
        store=store_config(path, merged["store"]),
    )
