"""domain console: the admin's terminal on a domain's console, on the node where it runs.

The session is OpenSSH's `ssh -t` running `virsh console` on the node, not
a paramiko channel: an interactive session needs the local terminal in raw
mode and restored afterwards (also when killed), its modes and size sent
with the pty request, every window size change passed on, and keys passed
through untouched. `ssh -t` does all of that; with `-e none` its own `~.`
escape is off, so the one way out is virsh's own escape key, Ctrl-].

ssh is pointed at exactly where havirt's scans go, by the command line the
openssh transport builds (remote/openssh.py): the node's recorded address,
the user and port as the scans resolve them, havirt's identity file,
known_hosts file and host key policy, and the ssh_config file. With
`ssh.backend: openssh` the session goes through the node's shared
connection, as every other command does; with paramiko, ssh_config alone
decides whether connections are shared.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile

from havirt.errors import ConfigError, RemoteError
from havirt.names import check_name
from havirt.plan.domains import running_copy, uri_of
from havirt.remote import commands as remote

ESCAPE_KEY = "Ctrl-]"


def console_session(app, name: str):
    """Find where `name` runs (a fresh scan, recorded) -> (node, ssh argv, the
    runner that built it: it also reads ssh's errors)."""
    from havirt.remote.openssh import OpenSSHRunner
    from havirt.remote.transport import Target
    check_name("domain", name)
    with app.work(dry_run=True, record=True) as w:    # a read: the scan is recorded
        cluster, _ = w.scan()
        node, fact = running_copy(cluster, name)     # a VM, or a container (its own driver)
        rec = w.state.nodes[node]
    ssh = OpenSSHRunner(app.cfg.ssh, {node: Target(node, rec.address, rec.user, rec.port)},
                        sharing=app.cfg.ssh.backend == "openssh")
    return node, ssh.argv(node, remote.console(app.cfg, name, uri=uri_of(app.cfg, fact)).text(), tty=True), ssh


def attach(node: str, argv: list[str], ssh) -> None:
    """Run the session in the admin's terminal until it ends."""
    from havirt.remote.openssh import SSH_FAILED
    if shutil.which(argv[0]) is None:
        raise ConfigError("domain console needs OpenSSH's ssh command "
                          "(Debian: apt-get install openssh-client)")
    # ssh's stderr into a file, not a pipe: a ProxyJump helper that ssh started
    # keeps it open as long as the shared connection lives
    with tempfile.TemporaryFile() as errors:
        p = subprocess.run(argv, stderr=errors, cwd="/")     # a master it leaves holds no folder
        errors.seek(0)
        stderr = errors.read(1 << 20).decode(errors="replace")
    err = (stderr.strip().splitlines() or [""])[-1]
    if p.returncode == SSH_FAILED:
        raise ssh.error(node, stderr)
    if p.returncode != 0:
        raise RemoteError(f"the console session on {node} ended with exit {p.returncode}"
                          + (f": {err}" if err else ""))
