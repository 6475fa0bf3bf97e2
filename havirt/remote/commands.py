"""Every command havirt runs on a node: built here, as argv or as a script.

Nothing outside remote/ writes remote command text (this module, and
live.py for the changes made to a running domain); planners ask for a
command by what it does, and the executor sends what they were given.
A Command becomes text in one place, Command.text(), where it is shown
(dry run, audit log) or sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from havirt.names import check_name, quote_argv
from havirt.parse.virsh import LXC, SHUT_OFF
from havirt.store.config import URI


@dataclass(frozen=True)
class Command:
    """One command for a node's shell (the admin host's, for op 'local').

    Either `argv`, one process whose arguments stay arguments, quoted once by
    text(); or `script`, several shell commands in one session (loops, pipes,
    exit codes), written whole by this module from quoted parts. `op` says
    what it does; `args` what a script was built from, for whoever needs to
    know what it asks without reading the text back.
    """

    op: str
    argv: tuple[str, ...] = ()
    script: str | None = None
    args: tuple = ()

    def text(self) -> str:
        """The shell text, exactly as shown and as sent."""
        return self.script if self.script is not None else quote_argv(self.argv)


# One virsh process per scan, for both drivers: several commands separated
# by ';'. It starts on the VMs' driver (virsh.uri: if that fails, virsh stops
# at once), `connect`s to the containers' (virsh.lxc_uri) for their list, then
# back to the VMs'. Its stderr is merged into its stdout: virsh flushes its
# output before every error line (vshError), so each error stands in the
# section of the command that failed. A failed `connect` keeps the connection
# before it, so the list after a failed one is the VMs' and is never read as
# containers, and an error in 'vm-connect' fails the node. The containers'
# part comes first so that the shell cuts it off the front cheaply.
SCAN_VIRSH = ("echo @@lxc-connect; connect {lxc}; echo @@lxc-list; list --all --name; echo @@lxc-end; "
              "echo @@vm-connect; connect {vm}; "
              "echo @@version; version --daemon; echo @@nodeinfo; nodeinfo; "
              "echo @@persistent; list --all --persistent --name; "
              "echo @@autostart; list --all --autostart --name; "
              "echo @@domstats; domstats --state --balloon --vcpu; echo @@end")

# Exit codes of wait_off().
WAIT_OFF, WAIT_RUNNING, WAIT_UNKNOWN = 0, 1, 2


def driver_uri(cfg, driver: str | None = None) -> str:
    """The libvirt URI of a driver on the nodes: `virsh.lxc_uri` for containers
    (parse.virsh.LXC), else `virsh.uri` (virtual machines)."""
    return cfg.lxc_uri if driver == LXC else cfg.virsh_uri


def virsh_argv(cfg, *args, uri: str | None = None) -> list[str]:
    """`virsh -c URI ARGS...` as argv: every remote virsh call is built here.
    `uri`: another driver's (driver_uri); None: `virsh.uri`."""
    return [cfg.virsh_command, "-c", uri or cfg.virsh_uri, *args]


def virsh(cfg, *args, uri: str | None = None) -> str:
    """The same, quoted: a part of a script."""
    return quote_argv(virsh_argv(cfg, *args, uri=uri))


def virsh_op(cfg, verb: str, *args, uri: str | None = None) -> Command:
    """`virsh -c URI VERB ARGS...` as a Command whose op is the verb."""
    return Command(op=verb, argv=tuple(virsh_argv(cfg, verb, *args, uri=uri)))


SCAN_FAILED = 3   # the scan script's exit code when its virsh did not end well (it stopped, or was killed)


# Leases: is libvirt's lock manager in force, in which lockspace, and which
# nodes' markers does this node see there? Each node keeps a marker file
# `.havirt-lease-NODE` in its lockspace (rewritten only when missing or
# wrong, so a scan writes nothing when it is right); nodes that see each
# other's markers share the lockspace. The probe runs on every node in every
# scan, so it starts one process: one grep for the three settings of the two
# files (the last line of each wins, comments and quotes cut by the shell)
# and for the lock manager in the daemon's memory map; the pid file and the
# markers are read by the shell itself (`read`, no process per marker: a
# node's probe costs the same in a cluster of 3 or of 100), and whether
# qemu-lockd.conf changed since the daemon wrote its pid file is the shell's
# `-nt`. (On a lab node the probe took 6.3 ms with a grep of the memory map
# and a stat of its own.) `$h` is the hostname the scan printed first.
LEASE_PROBE = r"""printf '@@leases\n'
pf=; p=; for x in /run/libvirtd.pid /run/virtqemud.pid; do [ -f "$x" ] || continue; p=; IFS= read -r p 2>/dev/null <"$x"; [ -d "/proc/$p" ] && { pf=$x; break; }; done
c=$(grep -saH -E '^[[:space:]]*(lock_manager|file_lockspace_dir|auto_disk_leases)[[:space:]]*=|lock-driver/lockd\.so' /etc/libvirt/qemu.conf /etc/libvirt/qemu-lockd.conf ${pf:+"/proc/$p/maps"})
conf() { v=; set -f; IFS='
'; for x in $c; do case $x in "$2:"*) x=${x#"$2:"}; x=${x#"${x%%[![:space:]]*}"}; case $x in "$1"*) x=${x#"$1"}; x=${x#"${x%%[![:space:]]*}"}; case $x in =*) v=${x#=};; esac;; esac;; esac; done; unset IFS; set +f; v=${v#"${v%%[![:space:]]*}"}; case $v in *'#'*) v=${v%%'#'*}; v=${v%"${v##*[![:space:]]}"};; esac; v=${v#'"'}; x=${v%"${v##*[![:space:]]}"}; case $x in *'"') v=${x%'"'};; esac; }
conf lock_manager /etc/libvirt/qemu.conf; lm=$v; conf file_lockspace_dir /etc/libvirt/qemu-lockd.conf; ls=$v; conf auto_disk_leases /etc/libvirt/qemu-lockd.conf
printf 'lock_manager=%s\nlockspace=%s\nauto_disk_leases=%s\n' "$lm" "$ls" "$v"
[ -S /run/libvirt/virtlockd-sock ] && echo virtlockd=yes || echo virtlockd=no
if [ -n "$pf" ]; then case "
$c" in *"
/proc/$p/maps:"*) echo lockd_loaded=yes;; *) echo lockd_loaded=no;; esac; [ /etc/libvirt/qemu-lockd.conf -nt "$pf" ] && echo lockd_conf_newer=yes || echo lockd_conf_newer=no; fi
if [ -n "$ls" ] && [ -d "$ls" ]; then
  m="havirt-lease-mark NODE $h"; f="$ls/.havirt-lease-NODE"; l=; IFS= read -r l 2>/dev/null <"$f"
  if [ "$l" = "$m" ] || { printf '%s\n' "$m" > "$f.$$" && mv -f "$f.$$" "$f"; } 2>/dev/null; then echo marked=yes; else echo marked=no; fi
  for g in "$ls"/.havirt-lease-*; do [ -f "$g" ] || continue; l=; IFS= read -r l < "$g"; printf 'seen=%.300s\n' "$l"; done
fi
"""


def virsh_word(uri: str) -> str:
    """A libvirt URI as one argument of a virsh command string (virsh splits
    those itself): config.yaml's URIs are checked when it is read to hold
    nothing virsh would split or quote (store.config.URI), so it goes as it is."""
    if not URI.fullmatch(uri):
        raise ValueError(f"not a URI config.yaml accepts: {uri!r}")
    return uri


def lxc_part(cfg) -> str:
    """The containers part of the scan script, from the one virsh's output
    `$o`: libvirt's LXC driver has no `domstats`, so the names it listed,
    then '@@lxc-domain NAME' with `dominfo` of each, unless its connect or
    its list said an error (parse.virsh.parse_lxc reads the sections). No
    process is started for a node without containers. Only cuts of the short
    front of `$o`: bash takes time in the square of the text for some
    expansions (`${o#"$q"}` took 120 ms of 8 KiB)."""
    info = virsh(cfg, "dominfo", "--domain", uri=driver_uri(cfg, LXC))
    return (
        "lx=${o%%\"$nl\"@@lxc-end*}; case $lx in \"$o\") ;; *) c=${lx%%\"$nl\"@@lxc-list*}; "
        "l=${lx#*\"$nl\"@@lxc-list\"$nl\"}; if ! said_error \"$c\" && ! said_error \"$l\"; then "
        "set -f; IFS=$nl; for d in $l; do unset IFS; printf '@@lxc-domain %s\\n' \"$d\"; "
        f"{info} \"$d\" 2>&1; done; unset IFS; set +f; fi;; esac")


def lease_probe(node: str) -> str:
    """The lease part of the scan script for `node` (a valid node name)."""
    return LEASE_PROBE.replace("NODE", check_name("node", node))


def scan_script(cfg, paths=(), dump_running=False, node: str | None = None) -> Command:
    """One remote session: hostname, node facts, every domain, path checks.

    `paths` are disk paths whose existence the caller needs to know (start,
    migrate); `dump_running` adds the live XML of every running domain
    (True: validate) or of the domains named (a list: domain info, the check
    after a start). Both ride in the same session, so a safety check never
    needs a second round of connections.

    virsh goes on after a failed command and exits with the status of the
    last one, so its stderr is merged into its stdout, each error line in the
    section of the command that failed (parse.virsh reads them there: a
    failure never rests on stderr alone); the script exits SCAN_FAILED when
    virsh itself ended badly. The lease part comes before the domains' XML,
    whose text the domains' owners write (a marker line in it could only
    repeat a section, and the first of a name wins).
    """
    paths = tuple(sorted(set(paths)))
    if dump_running is not True:
        dump_running = tuple(sorted(set(dump_running or ()))) or False
    lxc = driver_uri(cfg, LXC)
    lines = [
        # the kernel's host name (what hostname prints), read by the shell itself
        "printf '@@hostname\\n'; h=; IFS= read -r h </proc/sys/kernel/hostname || h=$(hostname); "
        "printf '%s\\n' \"$h\"",
        "LC_ALL=C; export LC_ALL; nl='\n'; "
        "said_error() { case \"$nl$1\" in *\"${nl}error:\"*) return 0;; esac; return 1; }",
        "o=$(" + virsh(cfg, SCAN_VIRSH.format(lxc=virsh_word(lxc), vm=virsh_word(cfg.virsh_uri)))
        + " 2>&1); rc=$?",
        "printf '@@virsh\\n%s\\n@@virsh-exit\\n%s\\n' \"$o\" \"$rc\"",
        lxc_part(cfg),
    ]
    if node is not None:     # before any text a domain's owner writes (its XML)
        lines.append(lease_probe(node).rstrip("\n"))
    if paths:
        lines.append("printf '@@paths\\n'")
        lines.append("for p in " + quote_argv(paths) + "; do "
                     "if [ -e \"$p\" ]; then printf '1 %s\\n' \"$p\"; "
                     "else printf '0 %s\\n' \"$p\"; fi; done")
    # the live XML: a VM's (virsh.uri), else a container's (virsh.lxc_uri)
    dump = (f"{virsh(cfg, 'dumpxml', '--domain')} \"$d\" 2>/dev/null || "
            f"{virsh(cfg, 'dumpxml', '--domain', uri=lxc)} \"$d\" 2>/dev/null")
    if dump_running is True:
        # one name per line, whatever it holds (spaces included)
        lines.append(f"{{ {virsh(cfg, 'list', '--name')}; {virsh(cfg, 'list', '--name', uri=lxc)} "
                     "2>/dev/null; } | while IFS= read -r d; do "
                     "[ -n \"$d\" ] || continue; printf '@@xml %s\\n' \"$d\"; "
                     f"{dump}; done")
    elif dump_running:
        # the domains named; a section stays empty where one is not defined
        lines.append("for d in " + quote_argv(dump_running) + "; do "
                     f"printf '@@xml %s\\n' \"$d\"; {dump}; done")
    lines.append(f"[ \"$rc\" = 0 ] || exit {SCAN_FAILED}")
    return Command(op="scan", script="\n".join(lines) + "\n", args=(paths, dump_running, node))


# -- domains -------------------------------------------------------------------

def create(cfg, uri: str | None = None) -> Command:
    """Start a transient domain from the XML on stdin."""
    return virsh_op(cfg, "create", "/dev/stdin", uri=uri)


def shutdown(cfg, name: str, uri: str | None = None) -> Command:
    return virsh_op(cfg, "shutdown", name, uri=uri)


def destroy(cfg, name: str, uri: str | None = None) -> Command:
    return virsh_op(cfg, "destroy", name, uri=uri)


def abort_job(cfg, name: str) -> Command:
    return virsh_op(cfg, "domjobabort", name)


def wait_off(cfg, name: str, seconds: float, uri: str | None = None) -> Command:
    """Poll domstate once a second in ONE session, until a deadline.

    Exit WAIT_OFF: off, or gone (a transient domain that shut down);
    WAIT_RUNNING: still running at the deadline; WAIT_UNKNOWN: virsh failed
    otherwise (libvirtd down...), so nobody can tell, and nothing may be
    started elsewhere on that basis.
    """
    state = virsh(cfg, "domstate", name, uri=uri)
    script = (f"end=$(( $(date +%s) + {int(seconds)} )); while :; do "
              f"s=$({state} 2>&1) || case \"$s\" in "
              f"*'failed to get domain'*|*'Domain not found'*) exit {WAIT_OFF};; "
              f"*) printf '%s\\n' \"$s\" >&2; exit {WAIT_UNKNOWN};; esac; "
              f"[ \"$s\" = {quote_argv([SHUT_OFF])} ] && exit {WAIT_OFF}; "
              f"[ \"$(date +%s)\" -ge \"$end\" ] && exit {WAIT_RUNNING}; sleep 1; done")
    return Command(op="wait-off", script=script, args=(name, seconds, uri))


def dump_inactive(cfg, names=None) -> Command:
    """`virsh dumpxml --inactive` of `names` (None: every domain the node
    knows), each after a line '@@xml NAME'."""
    if names is None:   # one name per line, whatever it holds (spaces, '*' included)
        script = (f"{virsh(cfg, 'list', '--all', '--name')} | while IFS= read -r d; do "
                  "[ -n \"$d\" ] || continue; printf '@@xml %s\\n' \"$d\"; "
                  f"{virsh(cfg, 'dumpxml', '--inactive', '--domain')} \"$d\"; done")
    else:
        names = tuple(names)
        script = "; ".join(f"printf '@@xml %s\\n' {quote_argv([n])}; "
                           f"{virsh(cfg, 'dumpxml', '--inactive', n)}" for n in names)
    return Command(op="dump-inactive", script=script, args=(names,))


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


def migrate(cfg, domain: str, address: str, user: str, port: int) -> Command:
    options = ["--live", "--verbose"] + (["--unsafe"] if cfg.migrate_unsafe else [])
    return virsh_op(cfg, "migrate", *options, domain, migrate_uri(cfg, address, user, port),
                    "--migrateuri", f"tcp://{_uri_host(address)}")


# -- everyday domain commands -------------------------------------------------------

def reboot(cfg, name: str, hard: bool = False, uri: str | None = None) -> Command:
    """`virsh reboot`: the guest is asked (ACPI, or its agent; a container's
    init by initctl or a signal); hard: `virsh reset`, at once, like the reset button."""
    verb = "reset" if hard else "reboot"
    return virsh_op(cfg, verb, name, uri=uri)


def console(cfg, name: str, uri: str | None = None) -> Command:
    """Attach to the domain's console (run in an interactive session with a pty)."""
    return virsh_op(cfg, "console", name, uri=uri)


# -- disk images (qemu-img, on a node that sees the pool) -----------------------------

QEMU_IMG = "qemu-img"
IMAGE_KINDS = ("file", "block", "missing", "other")


def images(pools=(), paths=()) -> Command:
    """What every regular file in the `pools` folders, and every path of
    `paths`, is: a section '@@image N' each, holding the path, its kind (file,
    block, missing, other) and, for a file, `qemu-img info --backing-chain`
    as JSON (or qemu-img's error). -U reads images that a running domain
    holds; nothing is written. Names holding a control character are skipped."""
    pools, paths = tuple(pools), tuple(paths)
    info = quote_argv([QEMU_IMG, "info", "-U", "--backing-chain", "--output=json"])
    one = ("n=$((n+1)); printf '@@image %s\\n%s\\n' \"$n\" \"$f\"; "
           "if [ -b \"$f\" ]; then echo block; elif [ ! -e \"$f\" ]; then echo missing; "
           f"elif [ -f \"$f\" ]; then echo file; {info} \"$f\" 2>&1; else echo other; fi")
    lines = ["n=0"]
    if pools:
        lines.append("for f in " + " ".join(quote_argv([p]) + "/*" for p in pools) + "; do "
                     "[ -f \"$f\" ] && [ ! -L \"$f\" ] || continue; "
                     "case \"$f\" in *[[:cntrl:]]*) continue;; esac; " + one + "; done")
    if paths:
        lines.append("for f in " + quote_argv(paths) + "; do " + one + "; done")
    lines.append("exit 0")    # an image qemu-img cannot read is said in its section
    return Command(op="images", script="\n".join(lines) + "\n", args=(pools, paths))


def absent(path: str) -> str:
    """Shell text that goes on only where nothing is at `path` (else it says so and exits 1)."""
    q = quote_argv([path])
    return (f"[ ! -e {q} ] && [ ! -L {q} ] || {{ {quote_argv(['echo', path, 'exists:', 'not', 'overwritten'])} "
            f">&2; exit 1; }}")


def _new_file(path: str, command: list[str]) -> str:
    """Run `command`, which makes the file `path`, only where nothing is at
    `path` yet; if it fails, what it left of `path` is removed (it was not there)."""
    return f"{absent(path)}; {quote_argv(command)} || {{ rm -f {quote_argv([path])}; exit 1; }}"


def size_arg(size_mib: int) -> str:
    """A size as qemu-img and virsh read it: whole GiB as G, else MiB as M (both binary)."""
    return f"{size_mib // 1024}G" if size_mib % 1024 == 0 else f"{int(size_mib)}M"


def create_image(path: str, size_mib: int) -> Command:
    """A new empty qcow2 image of `size_mib` MiB."""
    command = [QEMU_IMG, "create", "-q", "-f", "qcow2", path, size_arg(size_mib)]
    return Command(op="img-create", script=_new_file(path, command), args=(path, size_mib))


def overlay_image(path: str, backing: str, backing_format: str) -> Command:
    """A new qcow2 overlay whose backing file is `backing` (a linked clone)."""
    command = [QEMU_IMG, "create", "-q", "-f", "qcow2", "-F", backing_format, "-b", backing, path]
    return Command(op="img-overlay", script=_new_file(path, command),
                   args=(path, backing, backing_format))


def copy_image(source: str, source_format: str, path: str) -> Command:
    """A full, independent qcow2 copy of `source` (its backing chain flattened)."""
    command = [QEMU_IMG, "convert", "-f", source_format, "-O", "qcow2", source, path]
    return Command(op="img-copy", script=_new_file(path, command),
                   args=(source, source_format, path))


def remove_image(path: str) -> Command:
    """Remove an image file; never a link, a device or a folder."""
    q = quote_argv([path])
    script = (f"if [ -f {q} ] && [ ! -L {q} ]; then rm -- {q}; else "
              f"{quote_argv(['echo', path, 'is', 'not', 'a', 'regular', 'file:', 'not', 'removed'])} >&2; "
              "exit 1; fi")
    return Command(op="img-remove", script=script, args=(path,))


# -- on the admin host ---------------------------------------------------------------

def local(argv) -> Command:
    """A command run on the admin host (fencing): argv, quoted once like the rest."""
    return Command(op="local", argv=tuple(argv))
