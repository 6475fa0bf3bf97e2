"""The SSH transport config.yaml names (ssh.backend), made for a set of nodes."""

from __future__ import annotations

from havirt.remote.transport import Runner, Target


def make_runner(ssh_cfg, targets: dict[str, Target]) -> Runner:
    if ssh_cfg.backend == "openssh":
        from havirt.remote.openssh import OpenSSHRunner
        return OpenSSHRunner(ssh_cfg, targets)
    from havirt.remote.paramiko_ssh import ParamikoRunner
    return ParamikoRunner(ssh_cfg, targets)
