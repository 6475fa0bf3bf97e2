"""The commands havirt runs on nodes, built as argv and quoted once here."""

from __future__ import annotations

from urllib.parse import urlsplit

from .names import quote_argv

# One virsh process per scan: several commands separated by ';'.
SCAN_VIRSH = ("echo @@version; version --daemon; echo @@nodeinfo; nodeinfo; "
              "echo @@persistent; list --all --persistent --name; "
              "echo @@autostart; list --all --autostart --name; "
              "echo @@domstats; domstats --state --balloon --vcpu; echo @@end")


def virsh_argv(cfg, *args) -> list[str]:
    """`virsh -c URI ARGS...` as argv: every remote virsh call is built here."""
    return [cfg.virsh_command, "-c", cfg.virsh_uri, *args]


def virsh(cfg, *args) -> str:
    """The same, quoted for the remote shell."""
    return quote_argv(virsh_argv(cfg, *args))


def scan_script(cfg, paths=(), dump_running=False) -> str:
    """One remote session: hostname, node facts, every domain, path checks.

    `paths` are disk paths whose existence the caller needs to know (start,
    migrate); `dump_running` adds the live XML of every running domain
    (validate). Both ride in the same session, so a safety check never needs
    a second round of connections.
    """
    lines = [
        "printf '@@hostname\\n'; hostname",
        "printf '@@virsh-error\\n' >&2",
        virsh(cfg, SCAN_VIRSH),
        "rc=$?; printf '@@virsh-exit\\n%s\\n' \"$rc\"",
    ]
    if paths:
        lines.append("printf '@@paths\\n'")
        lines.append("for p in " + quote_argv(sorted(set(paths))) + "; do "
                     "if [ -e \"$p\" ]; then printf '1 %s\\n' \"$p\"; "
                     "else printf '0 %s\\n' \"$p\"; fi; done")
    if dump_running:
        lines.append(f"for d in $({virsh(cfg, 'list', '--name')}); do "
                     "printf '@@xml %s\\n' \"$d\"; "
                     f"{virsh(cfg, 'dumpxml')} \"$d\" 2>/dev/null; done")
    return "\n".join(lines) + "\n"


def _uri_host(address: str) -> str:
    """An IPv6 address goes in brackets inside a URI."""
    return f"[{address}]" if ":" in address else address


def migrate_uri(cfg, address: str, user: str, port: int) -> str:
    """The destination URI as the source node's virsh must see it."""
    parts = urlsplit(cfg.virsh_uri)
    driver = parts.scheme.split("+")[0] or "qemu"
    host = f"{user}@{_uri_host(address)}" + (f":{port}" if port and port != 22 else "")
    return f"{driver}+ssh://{host}{parts.path or '/system'}"


def migrate_argv(cfg, domain: str, address: str, user: str, port: int) -> list[str]:
    argv = virsh_argv(cfg, "migrate", "--live", "--verbose")
    if cfg.migrate_unsafe:
        argv.append("--unsafe")
    return argv + [domain, migrate_uri(cfg, address, user, port), "--migrateuri", f"tcp://{_uri_host(address)}"]
