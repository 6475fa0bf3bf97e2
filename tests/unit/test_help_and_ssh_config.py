"""Every command's --help shows an example; ~/.ssh/config is honoured."""

import click
import pytest

from havirt.cli import cli, load_commands
from havirt.remote.paramiko_ssh import ParamikoRunner
from havirt.remote.transport import Target
from havirt.store.config import SSHConfig

load_commands()


def all_commands(group=cli, path=()):
    for name, cmd in group.commands.items():
        yield path + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, path + (name,))


@pytest.mark.parametrize("path", [p for p, _ in all_commands()], ids=" ".join)
def test_help_has_an_example(fake, path):
    rc, out, err = fake.havirt(*path, "--help")
    assert rc == 0 and err == ""
    assert "Example" in out and f"havirt {' '.join(path[:1])}" in out


def ssh_cfg(tmp_path, **kw):
    base = dict(user="root", port=22, identity_file=None, known_hosts_file=None,
                host_key_policy="reject", connect_timeout=5, command_timeout=60, parallel=4,
                ssh_config=None)
    base.update(kw)
    return SSHConfig(**base)


def test_ssh_config_gives_hostname_user_port_identity(tmp_path):
    conf = tmp_path / "ssh_config"
    conf.write_text("Host n1\n  HostName 192.0.2.7\n  User admin\n  Port 2222\n"
                    "  IdentityFile /keys/n1\n")
    runner = ParamikoRunner(ssh_cfg(tmp_path, ssh_config=str(conf)),
                       {"n1": Target("n1", "n1"), "n2": Target("n2", "n2", user="ops", port=22022)})
    ep = runner.endpoint("n1")
    assert (ep.host, ep.user, ep.port, ep.key_filenames) == ("192.0.2.7", "admin", 2222, ["/keys/n1"])
    assert runner.describe("n1") == "ssh -p 2222 admin@192.0.2.7"
    # what the node record says wins; the configured defaults come last
    ep = runner.endpoint("n2")
    assert (ep.host, ep.user, ep.port) == ("n2", "ops", 22022)


def test_no_ssh_config_uses_the_configured_defaults(tmp_path):
    runner = ParamikoRunner(ssh_cfg(tmp_path, user="havirt", port=2200, identity_file="/k"),
                       {"n1": Target("n1", "10.0.0.1")})
    ep = runner.endpoint("n1")
    assert (ep.host, ep.user, ep.port, ep.key_filenames) == ("10.0.0.1", "havirt", 2200, ["/k"])
