"""config.yaml's store: section, checked (the schema in config.py gives the types)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from havirt.errors import ConfigError
from havirt.parse import numbers as n

STORE_BACKENDS = ("files", "etcd")          # store/stores.py: the home's files; store/etcd.py


@dataclass
class StoreConfig:
    """Where the home's facts live: `files` (the home itself) or `etcd`."""

    backend: str = "files"
    endpoints: list[str] = field(default_factory=list)   # http(s)://HOST:PORT
    prefix: str = "/havirt"
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    lock_ttl: int = 30



def _expand(p: str | None) -> str | None:
    return os.path.expanduser(p) if p else p


_ENDPOINT = re.compile(r"^(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})/?$")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._-]+)+$")


def store_config(path: Path, s: dict) -> StoreConfig:
    """store: backend files (the home) or etcd (endpoints, prefix, TLS, lock_ttl)."""
    if s["backend"] not in STORE_BACKENDS:
        raise ConfigError(f"{path}: key 'store.backend' must be one of {', '.join(STORE_BACKENDS)}, "
                          f"not {s['backend']!r}")
    endpoints = s["endpoints"] or []
    for url in endpoints:
        m = _ENDPOINT.match(url) if isinstance(url, str) else None
        if m is None or int(m.group(3)) not in n.PORT:
            raise ConfigError(f"{path}: key 'store.endpoints' must list URLs such as "
                              f"http://10.0.0.1:2379, not {str(url)[:60]!r}")
    if len(set(endpoints)) != len(endpoints):
        raise ConfigError(f"{path}: key 'store.endpoints' names an endpoint twice")
    if s["backend"] == "etcd" and not endpoints:
        raise ConfigError(f"{path}: key 'store.endpoints' must list the etcd members' client URLs "
                          "(store.backend is etcd)")
    if not _PREFIX.match(s["prefix"]):
        raise ConfigError(f"{path}: key 'store.prefix' must be a key path such as /havirt "
                          f"(letters, digits, '.', '_', '-' between slashes), not {s['prefix'][:60]!r}")
    if (s["cert"] is None) != (s["key"] is None):
        raise ConfigError(f"{path}: keys 'store.cert' and 'store.key' go together (a client "
                          "certificate and its key)")
    files = {}
    for key in ("ca", "cert", "key"):
        files[key] = _expand(s[key])
        if files[key] is not None and not os.path.isfile(files[key]):
            raise ConfigError(f"{path}: key 'store.{key}': no such file: {files[key]}")
    if any(files.values()) and not all(u.startswith("https://") for u in endpoints):
        raise ConfigError(f"{path}: keys 'store.ca', 'store.cert', 'store.key' need https:// "
                          "endpoints")
    if any(files.values()):
        _check_tls(path, files)
    return StoreConfig(s["backend"], [u.rstrip("/") for u in endpoints], s["prefix"],
                       files["ca"], files["cert"], files["key"], s["lock_ttl"])


def _check_tls(path: Path, files: dict) -> None:
    """The CA, the certificate and its key loaded as the connection will load
    them: one that cannot be (not PEM, a key of another certificate, an
    encrypted key, unreadable) is said here, not as members that "cannot connect"."""
    import ssl
    ctx = ssl.create_default_context()
    if files["ca"]:
        try:
            ctx.load_verify_locations(cafile=files["ca"])
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f"{path}: key 'store.ca': {files['ca']}: not a CA certificate havirt can "
                              f"use ({_tls_reason(e)})") from None
    if files["cert"]:
        try:
            ctx.load_cert_chain(files["cert"], files["key"], password="")   # never a prompt
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f"{path}: keys 'store.cert' and 'store.key': {files['cert']} and "
                              f"{files['key']}: not a certificate and its key ({_tls_reason(e)})") from None


def _tls_reason(e: Exception) -> str:
    import ssl
    if isinstance(e, ssl.SSLError):     # OpenSSL names no reason for a file that is not PEM
        return e.reason.replace("_", " ").lower() if e.reason else "not PEM, or an encrypted key"
    return e.strerror or str(e)

