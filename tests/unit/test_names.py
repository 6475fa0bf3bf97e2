"""names.check_name and quote_argv: the one validator and the one quoting function."""

import subprocess

import pytest

from havirt.errors import UsageError
from havirt.names import check_name, quote_argv


@pytest.mark.parametrize("name", ["web1", "a", "A_b-c.d", "_x", "9lives", "x" * 64, "db.prod-2"])
def test_valid_names(name):
    assert check_name("domain", name) == name


@pytest.mark.parametrize("name", [
    "", "a b", "x;rm", "x$(id)", "`id`", "a|b", "a&b", "a>b", "a/b", "../etc", "..", "a..b",
    ".hidden", "-rf", "--help", "x" * 65, "x" * 300, "é", "tab\there", "a'b", 'a"b', "a*",
    "web1\n", "web1\nrm -rf /", "\nweb1", "web1\r", "web1\x00",
])
def test_invalid_names(name):
    with pytest.raises(UsageError) as e:
        check_name("domain", name)
    msg = str(e.value)
    assert msg.startswith("invalid domain name ")
    assert msg.endswith("use 1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'")
    assert "\n" not in msg and "\r" not in msg
    assert len(msg) < 200
    assert e.value.exit_code == 2


def test_not_a_string():
    with pytest.raises(UsageError, match="invalid node name"):
        check_name("node", None)
    with pytest.raises(UsageError):
        check_name("node", 5)


def test_long_name_is_shortened_in_the_message():
    with pytest.raises(UsageError) as e:
        check_name("node", "y" * 500)
    assert "y" * 41 not in str(e.value)


NASTY = [
    "plain", "", "a b", "x;rm -rf /tmp/nothing", "$(echo pwned)", "`echo pwned`", "it's",
    'double "quoted"', "back\\slash", "new\nline", "tab\there", "*", "~root", "$HOME", "a|b&c>d<e",
    "-n", "--", "!event", "#comment", "{a,b}", "%s%d", "ünïcødé", "'", "''", "\"'\"'",
]


@pytest.mark.parametrize("x", NASTY)
def test_quote_argv_shell_metacharacters_are_inert(x):
    out = subprocess.run(["sh", "-c", "printf %s " + quote_argv([x])], capture_output=True,
                         check=True).stdout.decode()
    assert out == x


def test_quote_argv_keeps_arguments_apart():
    argv = ["virsh", "-c", "qemu:///system", "dumpxml", "a b", "c;d"]
    out = subprocess.run(["sh", "-c", "printf '[%s]' " + quote_argv(argv)], capture_output=True,
                         check=True).stdout.decode()
    assert out == "[virsh][-c][qemu:///system][dumpxml][a b][c;d]"
    assert quote_argv(["virsh", "list", 5]) == "virsh list 5"
    assert quote_argv(["a b"]) == "'a b'"
