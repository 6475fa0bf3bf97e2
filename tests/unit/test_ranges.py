"""One range per quantity (havirt/parse/numbers.py): whatever the command
line or config.yaml accepts, the state file and the rules accept too, and
what a node prints is held to the same ranges. Out of range, or a number of
thousands of digits: one line, exit 2 (a node: not believed), nothing
changed, at once."""

import json
import re

import pytest
from conftest import domain_xml
from fakes import refused, time_limit

from havirt.errors import ConfigError, ParseError
from havirt.parse import numbers as n
from havirt.parse.virsh import parse_domstats, parse_nodeinfo
from havirt.rules.fit import vcpu_cap
from havirt.store.config import load_config

HUGE = "1" * 10000


def base(fake):
    fake.node("node1")
    fake.node("node2", record=False)


# -- the command line ------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["node", "set", "node1", "--memory-cap", str(2 ** 53 + 1)], "--memory-cap"),
    (["node", "set", "node1", "--memory-cap", str(n.MEMORY_CAP_MIB.high + 1)], "--memory-cap"),
    (["node", "add", "node2", "--memory-cap", str(2 ** 53 + 1)], "--memory-cap"),
    (["node", "set", "node1", "--memory-cap", HUGE], "--memory-cap"),
    (["node", "set", "node1", "--memory-cap", "0"], "--memory-cap"),
    (["node", "set", "node1", "--port", HUGE], "--port"),
    (["node", "set", "node1", "--port", "65536"], "--port"),
    (["domain", "shutdown", "web1", "--wait", HUGE], "--wait"),
    (["domain", "migrate", "web1", "--timeout", "86401"], "--timeout"),
    (["cluster", "balance", "--max-moves", HUGE], "--max-moves"),
    (["cluster", "balance", "--min-gain", "1e300"], "--min-gain"),
])
def test_an_option_out_of_its_range_is_one_line(fake, args, fragment):
    base(fake)
    fake.conf("web1")
    err = refused(fake, args, 2, fragment, seconds=2)
    assert len(err) < 300, err
    assert fake.havirt("node", "list")[0] == 0            # the state still loads


def test_the_most_the_command_line_accepts_the_state_accepts(fake):
    base(fake)
    top = str(n.MEMORY_CAP_MIB.high)
    rc, out, err = fake.havirt("node", "set", "node1", "--memory-cap", top, "--port", "65535")
    assert rc == 0, err
    rc, out, err = fake.havirt("node", "list")
    assert rc == 0, err
    assert fake.state().nodes["node1"].memory_cap_mib == n.MEMORY_CAP_MIB.high


# -- config.yaml: every number has its range -----------------------------------------

CONFIG_NUMBERS = [        # key, its range, whether it takes numbers with a fraction
    ("lock_timeout", n.LOCK_WAIT, True),
    ("ssh.port", n.PORT, False),
    ("ssh.connect_timeout", n.SECONDS, True),
    ("ssh.command_timeout", n.SECONDS, True),
    ("ssh.parallel", n.PARALLEL, False),
    ("reserve.memory_mib", n.MEMORY_MIB, False),
    ("reserve.vcpu_ratio", n.VCPU_RATIO, True),
    ("balance.min_gain", n.MIN_GAIN, True),
    ("balance.max_moves", n.MOVES, False),
    ("migrate.timeout", n.SECONDS, True),
    ("recover.after", n.SCANS, False),
]


def config_with(tmp_path, key, value):
    section, _, name = key.rpartition(".")
    text = f"{section}:\n  {name}: {value}\n" if section else f"{name}: {value}\n"
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("key, rng, fraction", CONFIG_NUMBERS, ids=[k for k, *_ in CONFIG_NUMBERS])
def test_every_number_of_config_has_its_range(tmp_path, key, rng, fraction):
    load_config(config_with(tmp_path, key, rng.high))
    low = rng.low if rng.above else rng.low - 1
    for bad in [rng.high + 1, low, 10 ** 30] + ([1e23, rng.high + 0.5] if fraction else []):
        with pytest.raises(ConfigError) as e:
            load_config(config_with(tmp_path, key, bad))
        assert f"key '{key}' must be {rng}, not {bad!r}" in str(e.value), str(e.value)


def test_a_fence_timeout_has_the_range_of_every_timeout(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text("fence:\n  node3:\n    power_off: 'off {node}'\n    power_status: 'st {node}'\n"
                 f"    timeout: {n.SECONDS.high + 1}\n")
    with pytest.raises(ConfigError, match=f"key 'fence.node3.timeout' must be {n.SECONDS}, not "):
        load_config(p)


@pytest.mark.parametrize("args", [["cluster", "status", "--no-scan"],
                                  ["cluster", "balance", "--no-scan"]])
def test_a_huge_vcpu_ratio_is_refused_at_once(fake, args):
    base(fake)
    (fake.home / "config.yaml").write_text("reserve: {vcpu_ratio: 1e23}\n")
    refused(fake, args, 2, f"key 'reserve.vcpu_ratio' must be {n.VCPU_RATIO}, not 1e+23",
            seconds=2)


def test_vcpu_cap_is_bounded_whatever_it_is_given():
    with time_limit(2):
        assert vcpu_cap(8, 1e23) >= 8 * 10 ** 22
        assert vcpu_cap(1 << 16, 1e300) > 0
        assert vcpu_cap(3, 2.7) == 8 and vcpu_cap(10, 0.3) == 3


# -- conf/ XML and what nodes print -------------------------------------------------

@pytest.mark.parametrize("xml, fragment", [
    (domain_xml("web1").replace(">32<", f">{'9' * 5000}<"), "<memory> of 5000 digits is not believable"),
    (domain_xml("web1").replace("<vcpu>1<", f"<vcpu>{'9' * 5000}<"), "<vcpu> must be 1 to 4096"),
])
def test_thousands_of_digits_in_conf_xml(fake, xml, fragment):
    base(fake)
    (fake.home / "conf" / "web1.xml").write_text(xml)
    refused(fake, ["domain", "start", "web1", "node1"], 2, fragment, seconds=2)


@pytest.mark.parametrize("text, why", [
    ("CPU(s): " + "9" * 5000 + "\nMemory size: 1024 KiB\n", "CPU(s) is not a number of 0 to 65536"),
    ("CPU(s): 70000\nMemory size: 1024 KiB\n", "CPU(s) is not a number of 0 to 65536"),
    (f"CPU(s): 2\nMemory size: {(n.MIB_MOST + 1) * 1024} KiB\n", "memory size is not"),
])
def test_a_node_beyond_every_range_is_not_believed(text, why):
    with pytest.raises(ParseError, match=re.escape(why)):
        parse_nodeinfo(text)


@pytest.mark.parametrize("line", [f"balloon.current={'9' * 5000}", "vcpu.current=70000",
                                  f"state.state={'1' * 5000}"])
def test_domstats_beyond_every_range_is_not_believed(line):
    with pytest.raises(ParseError, match="is not a number of"):
        parse_domstats(f"Domain: 'a'\n  state.state=1\n  {line}\n")


@pytest.mark.parametrize("where, text", [
    ("config.yaml", "ssh: {port: " + "9" * 5000 + "}\n"),
    ("var/state.yaml", '{"format": 1, "nodes": {"node1": {"address": "10.0.0.1", "cpus": '
     + "9" * 5000 + "}}}"),
])
def test_a_number_of_thousands_of_digits_in_a_file(fake, where, text):
    base(fake)
    (fake.home / where).write_text(text)
    refused(fake, ["node", "list"], 2, "line 1: a number of 5000 characters", seconds=2)


def test_a_display_port_of_thousands_of_digits_is_no_port(fake):
    base(fake)
    xml = domain_xml("web1").replace("</devices>", f"<graphics type='vnc' port='{'5' * 5000}'/></devices>")
    (fake.home / "conf" / "web1.xml").write_text(xml)
    rc, out, err = fake.havirt("-f", "json", "domain", "info", "web1")
    assert rc == 0, err
    assert json.loads(out)["graphics"] == [{"type": "vnc", "port": None, "listen": None, "autoport": False}]
