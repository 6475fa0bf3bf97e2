"""domain console: the admin's terminal on a domain's console, on the node where it runs.

The session is OpenSSH's `ssh -t` running `virsh console` on the node, not
a paramiko channel: an interactive session needs the local terminal in raw
mode and restored afterwards (also when killed), its modes and size sent
with the pty request, every window size change passed on, and keys passed
through untouched. `ssh -t` does all of that; with `-e none` its own `~.`
escape is off, so the one way out is virsh's own escape key, Ctrl-].

ssh is pointed at exactly where havirt's scans go: the node's recorded
address, the user and port as the scans resolve them, havirt's identity
file, known_hosts file and host key policy, and the same ssh_config file
(`none` when havirt reads none).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess

from havirt.errors import ConfigError, NodeUnreachable, RemoteError
from havirt.names import check_name
from havirt.plan.domains import where_running
from havirt.remote import commands as remote

ESCAPE_KEY = "Ctrl-]"
SSH_FAILED = 255     # ssh's own exit status when the connection failed

_HOST_KEY_OPTIONS = {
    "reject": ["StrictHostKeyChecking=yes"],
    "accept-new": ["StrictHostKeyChecking=accept-new"],
    "ignore": ["StrictHostKeyChecking=no"],
}


def ssh_argv(ssh_cfg, address: str, user: str, port: int, keys: list[str],
             remote_command: str) -> list[str]:
    """The local `ssh -t ...` command line for an interactive session."""
    argv = ["ssh", "-t", "-e", "none", "-o", "LogLevel=ERROR",
            "-F", ssh_cfg.ssh_config if ssh_cfg.ssh_config and os.path.isfile(ssh_cfg.ssh_config)
            else "none",
            "-l", user, "-p", str(port),
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, math.ceil(ssh_cfg.connect_timeout))}"]
    if ssh_cfg.identity_file:
        argv += ["-i", ssh_cfg.identity_file]
    if keys:
        argv += ["-o", "IdentitiesOnly=yes"]
    known = ssh_cfg.known_hosts_file
    if ssh_cfg.host_key_policy == "ignore" or not known:
        known = "/dev/null"
    argv += ["-o", f"UserKnownHostsFile={known}"]
    for option in _HOST_KEY_OPTIONS[ssh_cfg.host_key_policy]:
        argv += ["-o", option]
    return argv + ["--", address, remote_command]


def console_session(app, name: str) -> tuple[str, list[str]]:
    """Find where `name` runs (a fresh scan, recorded) -> (node, ssh argv)."""
    from havirt.remote.transport import SSHRunner, Target
    check_name("domain", name)
    with app.work(dry_run=True, record=True) as w:    # a read: the scan is recorded
        cluster, _ = w.scan()
        node = where_running(cluster, name)
        rec = w.state.nodes[node]
    resolver = SSHRunner(app.cfg.ssh, {node: Target(node, rec.address, rec.user, rec.port)})
    ep = resolver.endpoint(node)
    return node, ssh_argv(app.cfg.ssh, rec.address, ep.user, ep.port, ep.key_filenames,
                          remote.console(app.cfg, name).text())


def attach(node: str, argv: list[str]) -> None:
    """Run the session in the admin's terminal until it ends."""
    if shutil.which(argv[0]) is None:
        raise ConfigError("domain console needs OpenSSH's ssh command "
                          "(Debian: apt-get install openssh-client)")
    p = subprocess.run(argv, stderr=subprocess.PIPE)
    err = (p.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
    if p.returncode == SSH_FAILED:
        raise NodeUnreachable(node, err or "ssh: connection failed")
    if p.returncode != 0:
        raise RemoteError(f"the console session on {node} ended with exit {p.returncode}"
                          + (f": {err}" if err else ""))
