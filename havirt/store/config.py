"""The home (conf/, var/, config.yaml) and the validated configuration."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from havirt.errors import ConfigError
from havirt.store import strictyaml

HOST_KEY_POLICIES = ("reject", "accept-new", "ignore")


# Every key with its type and default; config.sample.yaml documents the same.
SCHEMA: dict[str, object] = {
    "dryrun": (bool, True),
    "lock_timeout": ((int, float), 60),
    "ssh": {
        "user": (str, "root"),
        "port": (int, 22),
        "identity_file": ((str, type(None)), None),
        "known_hosts_file": ((str, type(None)), "~/.ssh/known_hosts"),
        "host_key_policy": (str, "reject"),
        "connect_timeout": ((int, float), 5),
        "command_timeout": ((int, float), 60),
        "parallel": (int, 16),
        "ssh_config": ((str, type(None)), "~/.ssh/config"),
    },
    "virsh": {
        "uri": (str, "qemu:///system"),
        "command": (str, "virsh"),
    },
    "reserve": {
        "memory_mib": (int, 1024),
        "vcpu_ratio": ((int, float), 4.0),
    },
    "balance": {
        "min_gain": ((int, float), 0.03),
        "max_moves": ((int, type(None)), 20),
        "n_plus_1": (bool, True),
    },
    "migrate": {
        "timeout": ((int, float), 600),
        "unsafe": (bool, False),
    },
    "recover": {
        "enabled": (bool, False),
        "after": (int, 3),
    },
    "fence": ((dict, type(None)), None),     # checked by _fences (node names are its keys)
    "pools": ((dict, type(None)), None),     # checked by _pools (pool names are its keys)
    "metrics": {
        "textfile": ((str, type(None)), None),
    },
}
# fence: NODE: {power_off: COMMAND, power_status: COMMAND, off_when: REGEX, timeout: SECONDS}
# (not `off:` as a key: YAML 1.1 reads a bare off as false)
FENCE_KEYS = {"power_off": str, "power_status": str, "off_when": str, "timeout": (int, float)}
FENCE_PLACEHOLDERS = ("node", "address")


def _type_name(t) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string",
             type(None): "null"}
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
        types, default = spec
        value = data.get(key, default)
        ok_types = types if isinstance(types, tuple) else (types,)
        # bool is an int in Python: never accept true/false where a number is meant.
        if isinstance(value, bool) and bool not in ok_types:
            ok = False
        else:
            ok = isinstance(value, ok_types)
        if ok and isinstance(value, float) and not math.isfinite(value):
            ok = False
        if not ok:
            raise ConfigError(
                f"{path}: key '{name}' must be {_type_name(types)}, not {value!r}")
        out[key] = value


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
    recover_enabled: bool = False
    recover_after: int = 3
    fence: dict = field(default_factory=dict)   # node -> Fence
    pools: dict = field(default_factory=dict)   # pool name -> its folder (absolute, normalised)

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


def _fences(path: Path, data) -> dict:
    import shlex
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
                argvs[key] = shlex.split(spec[key])
                for a in argvs[key]:
                    a.format(**{p: "x" for p in FENCE_PLACEHOLDERS})
            except (ValueError, KeyError, IndexError) as e:
                raise ConfigError(f"{path}: key '{where}.{key}': not a command template "
                                  f"({e}; placeholders: {{node}}, {{address}})") from None
            if not argvs[key]:
                raise ConfigError(f"{path}: key '{where}.{key}' is empty")
        try:
            pattern = re.compile(spec.get("off_when", r"\boff\b"), re.IGNORECASE)
        except re.error as e:
            raise ConfigError(f"{path}: key '{where}.off_when': not a regular expression ({e})") from None
        timeout = spec.get("timeout", 60)
        if not 0 < timeout <= 3600:
            raise ConfigError(f"{path}: key '{where}.timeout' must be 1 to 3600 seconds")
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
    text = strictyaml.read_text(path, ConfigError)
    if text is None:
        return {}
    try:
        return strictyaml.load(text) or {}
    except strictyaml.Refused as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        line = strictyaml.error_line(e)
        raise ConfigError(f"{path}:{f' line {line}' if line else ''} is not valid YAML") from e


def _check_values(path: Path, merged: dict) -> None:
    """What the types alone do not say: choices, ranges, a valid user name."""
    s = merged["ssh"]
    if s["host_key_policy"] not in HOST_KEY_POLICIES:
        raise ConfigError(f"{path}: key 'ssh.host_key_policy' must be one of "
                          f"{', '.join(HOST_KEY_POLICIES)}, not {s['host_key_policy']!r}")
    from havirt.names import check_user
    try:
        check_user(s["user"])
    except Exception as e:
        raise ConfigError(f"{path}: key 'ssh.user': {e}") from None
    for key in ("port", "parallel"):
        if s[key] < 1 or (key == "port" and s[key] > 65535):
            raise ConfigError(f"{path}: key 'ssh.{key}' out of range: {s[key]}")
    for key in ("connect_timeout", "command_timeout"):
        if s[key] <= 0:
            raise ConfigError(f"{path}: key 'ssh.{key}' must be more than 0")
    if merged["reserve"]["vcpu_ratio"] <= 0:
        raise ConfigError(f"{path}: key 'reserve.vcpu_ratio' must be more than 0")
    for key, value, low in (("reserve.memory_mib", merged["reserve"]["memory_mib"], 0),
                            ("lock_timeout", merged["lock_timeout"], 0),
                            ("migrate.timeout", merged["migrate"]["timeout"], 1),
                            ("balance.min_gain", merged["balance"]["min_gain"], 0),
                            ("balance.max_moves", 1 if merged["balance"]["max_moves"] is None
                             else merged["balance"]["max_moves"], 1),
                            ("recover.after", merged["recover"]["after"], 1)):
        if value < low:
            raise ConfigError(f"{path}: key '{key}' must be at least {low:g}, not {value!r}")


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
        ),
        virsh_uri=merged["virsh"]["uri"],
        virsh_command=merged["virsh"]["command"],
        reserve_mib=merged["reserve"]["memory_mib"],
        vcpu_ratio=float(merged["reserve"]["vcpu_ratio"]),
        balance_min_gain=float(merged["balance"]["min_gain"]),
        balance_max_moves=merged["balance"]["max_moves"] if merged["balance"]["max_moves"] is not None
        else "none",
        balance_n_plus_1=merged["balance"]["n_plus_1"],
        migrate_timeout=float(merged["migrate"]["timeout"]),
        migrate_unsafe=merged["migrate"]["unsafe"],
        recover_enabled=merged["recover"]["enabled"],
        recover_after=merged["recover"]["after"],
        fence=_fences(path, fence),
        pools=_pools(path, pools),
        metrics_textfile=_expand(merged["metrics"]["textfile"]),
    )


@dataclass
class Home:
    """Where conf/, var/ and config.yaml live."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def state_file(self) -> Path:
        return self.var / "state.yaml"

    @property
    def lock_file(self) -> Path:
        return self.var / "havirt.lock"

    @property
    def audit_file(self) -> Path:
        return self.var / "audit.log"

    def ensure(self) -> None:
        """conf/ and var/ exist, and are not links someone else planted."""
        from havirt.store.files import check_link
        for d in (self.conf, self.var):
            check_link(d)
            try:
                d.mkdir(mode=0o750, parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot create {d}: {e.strerror}") from e


def resolve_home(option: str | None, script_dir: Path | None) -> Home:
    """--home DIR, else $HAVIRT_HOME, else the folder that holds havirt.py."""
    if option is not None and not option.strip():
        raise ConfigError("--home is empty: give the folder of the havirt home")
    chosen = option or os.environ.get("HAVIRT_HOME")
    if not chosen and script_dir is not None and (script_dir / "havirt.py").exists():
        chosen = str(script_dir)
    if not chosen:
        raise ConfigError("no havirt home: give --home DIR or set HAVIRT_HOME")
    root = Path(chosen).expanduser()
    from havirt.store.files import check_link
    check_link(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"havirt home {root} is not a folder")
    return Home(root.resolve())
