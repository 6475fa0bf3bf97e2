"""Every command havirt runs on a node: built here as argv, quoted once here.

Nothing else in havirt writes remote command text; planners ask for a
command by what it does, and the executor sends what they were given.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from havirt.names import check_name, quote_argv

# One virsh process per scan: several commands separated by ';'.
SCAN_VIRSH = ("echo @@version; version --daemon; echo @@nodeinfo; nodeinfo; "
              "echo @@persistent; list --all --persistent --name; "
              "echo @@autostart; list --all --autostart --name; "
              "echo @@domstats; domstats --state --balloon --vcpu; echo @@end")

# Exit codes of wait_off().
WAIT_OFF, WAIT_RUNNING, WAIT_UNKNOWN = 0, 1, 2


def virsh_argv(cfg, *args) -> list[str]:
    """`virsh -c URI ARGS...` as argv: every remote virsh call is built here."""
    return [cfg.virsh_command, "-c", cfg.virsh_uri, *args]


def virsh(cfg, *args) -> str:
    """The same, quoted for the remote shell."""
    return quote_argv(virsh_argv(cfg, *args))


SCAN_FAILED = 3   # the scan script's exit code when any virsh command in it failed


# Leases: is libvirt's lock manager in force, in which lockspace, and which
# nodes' markers does this node see there? Each node keeps a marker file
# `.havirt-lease-NODE` in its lockspace (rewritten only when missing or
# wrong); nodes that see each other's markers share the lockspace.
LEASE_PROBE = r"""printf '@@leases\n'
conf() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$2" 2>/dev/null | tail -n 1 | sed 's/[[:space:]]*#.*$//; s/^"//; s/"[[:space:]]*$//'; }
printf 'lock_manager=%s\nlockspace=%s\nauto_disk_leases=%s\n' "$(conf lock_manager /etc/libvirt/qemu.conf)" "$(conf file_lockspace_dir /etc/libvirt/qemu-lockd.conf)" "$(conf auto_disk_leases /etc/libvirt/qemu-lockd.conf)"
[ -S /run/libvirt/virtlockd-sock ] && echo virtlockd=yes || echo virtlockd=no
for pf in /run/libvirtd.pid /run/virtqemud.pid; do p=$(cat "$pf" 2>/dev/null) && [ -d "/proc/$p" ] || continue; grep -q 'lock-driver/lockd\.so' "/proc/$p/maps" 2>/dev/null && echo lockd_loaded=yes || echo lockd_loaded=no; printf 'daemon_started=%s\nlockd_conf_changed=%s\n' "$(stat -c %Y "$pf")" "$(stat -c %Y /etc/libvirt/qemu-lockd.conf 2>/dev/null)"; break; done
ls=$(conf file_lockspace_dir /etc/libvirt/qemu-lockd.conf)
if [ -n "$ls" ] && [ -d "$ls" ]; then
  m="havirt-lease-mark NODE $(hostname)"; f="$ls/.havirt-lease-NODE"
  if [ "$(cat "$f" 2>/dev/null)" = "$m" ] || { printf '%s\n' "$m" > "$f.$$" && mv -f "$f.$$" "$f"; } 2>/dev/null; then echo marked=yes; else echo marked=no; fi
  for g in "$ls"/.havirt-lease-*; do [ -f "$g" ] && printf 'seen=%s\n' "$(head -c 300 "$g" | head -n 1)"; done
fi
"""


def lease_probe(node: str) -> str:
    """The lease part of the scan script for `node` (a valid node name)."""
    return LEASE_PROBE.replace("NODE", check_name("node", node))


def scan_script(cfg, paths=(), dump_running=False, node: str | None = None) -> str:
    """One remote session: hostname, node facts, every domain, path checks.

    `paths` are disk paths whose existence the caller needs to know (start,
    migrate); `dump_running` adds the live XML of every running domain
    (True: validate) or of the domains named (a list: domain info, the check
    after a start). Both ride in the same session, so a safety check never
    needs a second round of connections.

    virsh goes on after a failed command and exits with the status of the
    last one, so its stderr is caught and relayed on stdout (section
    virsh-error), and the script exits SCAN_FAILED when virsh said `error:`
    or exited non-zero: a failure never rests on stderr alone.
    """
    lines = [
        "printf '@@hostname\\n'; hostname",
        "{ err=$(" + virsh(cfg, SCAN_VIRSH) + " 2>&1 >&3); rc=$?; } 3>&1",
        "printf '@@virsh-exit\\n%s\\n@@virsh-error\\n%s\\n' \"$rc\" \"$err\"",
    ]
    if paths:
        lines.append("printf '@@paths\\n'")
        lines.append("for p in " + quote_argv(sorted(set(paths))) + "; do "
                     "if [ -e \"$p\" ]; then printf '1 %s\\n' \"$p\"; "
                     "else printf '0 %s\\n' \"$p\"; fi; done")
    if dump_running is True:
        # one name per line, whatever it holds (spaces included)
        lines.append(f"{virsh(cfg, 'list', '--name')} | while IFS= read -r d; do "
                     "[ -n \"$d\" ] || continue; printf '@@xml %s\\n' \"$d\"; "
                     f"{virsh(cfg, 'dumpxml', '--domain')} \"$d\" 2>/dev/null; done")
    elif dump_running:
        # the domains named; a section stays empty where one is not defined
        lines.append("for d in " + quote_argv(sorted(set(dump_running))) + "; do "
                     "printf '@@xml %s\\n' \"$d\"; "
                     f"{virsh(cfg, 'dumpxml', '--domain')} \"$d\" 2>/dev/null; done")
    if node is not None:
        lines.append(lease_probe(node).rstrip("\n"))
    lines.append(f"case \"$rc:$err\" in 0:*error:*|[!0]*) exit {SCAN_FAILED};; esac")
    return "\n".join(lines) + "\n"


# -- domains -------------------------------------------------------------------

def create(cfg) -> str:
    """Start a transient domain from the XML on stdin."""
    return virsh(cfg, "create", "/dev/stdin")


def shutdown(cfg, name: str) -> str:
    return virsh(cfg, "shutdown", name)


def destroy(cfg, name: str) -> str:
    return virsh(cfg, "destroy", name)


def abort_job(cfg, name: str) -> str:
    return virsh(cfg, "domjobabort", name)


def wait_off(cfg, name: str, seconds: float) -> str:
    """Poll domstate once a second in ONE session, until a deadline.

    Exit WAIT_OFF: off, or gone (a transient domain that shut down);
    WAIT_RUNNING: still running at the deadline; WAIT_UNKNOWN: virsh failed
    otherwise (libvirtd down...), so nobody can tell, and nothing may be
    started elsewhere on that basis.
    """
    state = virsh(cfg, "domstate", name)
    return (f"end=$(( $(date +%s) + {int(seconds)} )); while :; do "
            f"s=$({state} 2>&1) || case \"$s\" in "
            "*'failed to get domain'*|*'Domain not found'*) exit 0;; "
            "*) printf '%s\\n' \"$s\" >&2; exit 2;; esac; "
            "[ \"$s\" = 'shut off' ] && exit 0; "
            "[ \"$(date +%s)\" -ge \"$end\" ] && exit 1; sleep 1; done")


def dump_inactive(cfg, names=None) -> str:
    """`virsh dumpxml --inactive` of `names` (None: every domain the node
    knows), each after a line '@@xml NAME'."""
    if names is None:   # one name per line, whatever it holds (spaces, '*' included)
        return (f"{virsh(cfg, 'list', '--all', '--name')} | while IFS= read -r d; do "
                "[ -n \"$d\" ] || continue; printf '@@xml %s\\n' \"$d\"; "
                f"{virsh(cfg, 'dumpxml', '--inactive', '--domain')} \"$d\"; done")
    return "; ".join(f"printf '@@xml %s\\n' {quote_argv([n])}; "
                     f"{virsh(cfg, 'dumpxml', '--inactive', n)}" for n in names)


# -- migration -------------------------------------------------------------------

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


def migrate(cfg, domain: str, address: str, user: str, port: int) -> str:
    return quote_argv(migrate_argv(cfg, domain, address, user, port))


# -- everyday domain commands -------------------------------------------------------

def reboot(cfg, name: str, hard: bool = False) -> str:
    """`virsh reboot`: the guest is asked (ACPI, or its agent); hard: `virsh
    reset`, at once, like the reset button."""
    return virsh(cfg, "reset" if hard else "reboot", name)


def console(cfg, name: str) -> str:
    """Attach to the domain's console (run in an interactive session with a pty)."""
    return virsh(cfg, "console", name)


# -- on the admin host ---------------------------------------------------------------

def local(argv) -> str:
    """A command run on the admin host (fencing), quoted once like the rest."""
    return quote_argv(argv)
