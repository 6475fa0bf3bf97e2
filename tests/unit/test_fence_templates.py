"""fence.NODE.power_off / power_status are argv templates that take {node}
and {address}, and nothing else: no attribute access, no indexing, no format
spec or conversion (a `{node:>100000000}` would build 100 MB per argument).
Anything else is one line naming the key, exit 2, on every command."""

import pytest
from fakes import refused


@pytest.mark.parametrize("template, shown", [
    ("echo {node.x}", "{node.x}"),
    ("echo {node.__class__}", "{node.__class__}"),
    ("echo {node[0]}", "{node[0]}"),
    ("echo {address[1:2]}", "{address[1:2]}"),
    ("echo {node:>100000000}", "{node:>100000000}"),
    ("echo {node!r}", "{node!r}"),
    ("echo {node:{address}}", "{node:{address}}"),
    ("echo {}", "{}"),
    ("echo {0}", "{0}"),
    ("echo {nodes}", "{nodes}"),
    ("echo {node", "expected '}' before end of string"),
    ("echo node}", "Single '}' encountered"),
])
def test_a_fence_template_takes_only_its_placeholders(fake, template, shown):
    fake.node("node1")
    (fake.home / "config.yaml").write_text(
        f"fence:\n  node3:\n    power_off: {template!r}\n    power_status: 'ipmi {{node}} status'\n")
    for args in (["node", "list"], ["node", "failover", "node1"]):
        err = refused(fake, args, 2, "config.yaml: key 'fence.node3.power_off': not a command template",
                      seconds=2)
        assert shown in err and "placeholders: {node}, {address}" in err


def test_placeholders_and_escaped_braces_are_filled_in(tmp_path):
    from havirt.store.config import load_config
    p = tmp_path / "config.yaml"
    p.write_text("fence:\n  node3:\n    power_off: \"ipmi -H bmc-{node} --at={address} '{{x}}'\"\n"
                 "    power_status: 'ipmi {node} status'\n")
    fence = load_config(p).fence["node3"]
    assert fence.argv("power_off", "node3", "10.0.0.3") == ["ipmi", "-H", "bmc-node3", "--at=10.0.0.3",
                                                            "{x}"]
