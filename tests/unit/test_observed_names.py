"""Domains observed on nodes may have any name libvirt accepts: havirt records,
lists, counts and reports them, and never refuses to load what it recorded.

The name rule (names.valid_name) is for names an admin gives havirt; a name
a node reports is only ever quoted, escaped or skipped with a reason.
"""

import json

import pytest
from fakes import is_scan

from havirt.parse.virsh import parse_domstats, parse_names
from havirt.store.state import DomainRecord, State, load_state, save_state

SPACE = "win10 test"
PLUS = "web+1"
LONG = "d" * 100
ACCENT = "données-été"
HOSTILE = "x'; touch /tmp/pwned; '$(id)"
TAB = "tab\tname"
ESC = "esc\x1b[31mred"
SEPARATOR = "line\u2028sep\x85end\x1cfs"     # characters str.splitlines() splits at
ODD = [SPACE, PLUS, LONG, ACCENT, HOSTILE, TAB, ESC, SEPARATOR]


def odd_cluster(fake):
    a, b = fake.node("node1"), fake.node("node2")
    fake.conf("web1", memory_mib=64)
    a.add("web1", memory_mib=64)
    for i, name in enumerate(ODD):
        (a if i % 2 else b).add(name, memory_mib=100 + i)
    return a, b


def scan(fake, *args):
    rc, out, err = fake.havirt("node", "scan", *args)
    assert rc == 1 and "Traceback" not in err and "internal error" not in err, (out, err)
    return out, err


def test_a_scan_records_every_observed_name_and_the_state_loads_again(fake):
    odd_cluster(fake)
    scan(fake)
    scan(fake)        # the second command loads what the first recorded
    state = fake.state()
    for name in ODD:
        rec = state.domains[name]
        assert rec.node in ("node1", "node2") and rec.state == "running", name
    assert state.domains[LONG].memory_mib == 102


@pytest.mark.parametrize("fmt", ["screen", "tsv", "json"])
def test_every_listing_works_with_odd_names(fake, fmt):
    odd_cluster(fake)
    scan(fake)
    for args in (("domain", "list"), ("node", "list"), ("cluster", "status", "--no-scan"),
                 ("domain", "list", "--running"), ("domain", "list", "--node", "node2")):
        rc, out, err = fake.havirt("-f", fmt, *args)
        assert rc == 0 and err == "", (args, err)
        assert "\x1b" not in out and "\u2028" not in out and "\x85" not in out, args
        if fmt == "json":
            json.loads(out)
    rc, out, err = fake.havirt("-f", fmt, "domain", "list")
    if fmt == "json":
        assert {r["name"] for r in json.loads(out)} == set(ODD) | {"web1"}
    elif fmt == "tsv":
        lines = out.splitlines()
        assert len(lines) == 1 + len(ODD) + 1               # one line per domain, whatever its name
        columns = lines[0].count("\t")
        assert columns >= 8 and all(line.count("\t") == columns for line in lines)  # a tab in a name never adds one
        assert "tab\\tname\t" in out and "esc\\x1b[31mred" in out
        assert "line\\u2028sep\\x85end\\x1cfs" in out
    else:
        assert "win10 test" in out and LONG in out and ACCENT in out and "esc\\x1b[31mred" in out
        assert len(out.splitlines()) == 2 + len(ODD) + 1


def test_a_double_run_of_an_odd_name_is_critical_with_a_quoted_fix(fake):
    a, b = fake.node("node1"), fake.node("node2")
    for n in (a, b):
        n.add(SPACE)
        n.add(HOSTILE)
    rc, out, err = fake.havirt("-v", "node", "scan")
    assert rc == 1
    assert "CRITICAL duplicate win10 test: DOMAIN 'win10 test' RUNS ON 2 NODES AT ONCE: node1, node2" in out
    assert "(virsh destroy 'win10 test' on each node but one)" in out
    assert "virsh destroy 'x'\"'\"'; touch /tmp/pwned; '\"'\"'$(id)' on each node" in out
    assert fake.state().domains[SPACE].conflict == ["node1", "node2"]
    rc, out, err = fake.havirt("-q", "node", "scan")      # cron, again: still reported
    assert rc == 1 and out.count("CRITICAL duplicate") == 2


def test_no_xml_for_an_odd_name_says_it_cannot_be_imported(fake):
    a = fake.node("node1")
    a.add(SPACE, persistent=True)
    rc, out, err = fake.havirt("-v", "node", "scan")
    assert rc == 1
    assert ("WARNING no-xml win10 test: domain 'win10 test' runs on node1 but conf/ has no XML for it, "
            "and cannot: its name is outside havirt's name rule") in out
    assert "virsh domrename 'win10 test' NEWNAME" in out
    assert "virsh autostart --disable 'win10 test'; virsh undefine 'win10 test'" in out
    # a valid name keeps the plain import hint
    a.add("db1")
    rc, out, err = fake.havirt("-v", "node", "scan")
    assert "conf/ has no db1.xml (fix: havirt domain import db1 --from node1)" in out


def test_odd_names_are_counted_in_every_sum(fake):
    a, b = odd_cluster(fake)
    rc, out, err = fake.havirt("-f", "json", "cluster", "status")
    assert rc == 0, err
    doc = json.loads(out)
    held = {n.name: sum(d.memory_mib for d in n.domains.values()) for n in (a, b)}
    assert {r["name"]: r["allocated_mib"] for r in doc["nodes"]} == held
    assert doc["totals"]["allocated_mib"] == 64 + sum(100 + i for i in range(len(ODD)))
    assert doc["totals"]["domains"] == len(ODD) + 1
    rc, out, err = fake.havirt("-f", "json", "node", "list")
    assert {r["name"]: r["domains"] for r in json.loads(out)} == {"node1": 5, "node2": 4}


def test_balance_and_evacuation_never_move_an_odd_name(fake):
    a, _b = fake.node("node1"), fake.node("node2")
    fake.node("node3")
    a.add(SPACE, memory_mib=2048)
    a.add(LONG, memory_mib=2048)
    scan(fake)                        # cron recorded them
    rc, out, err = fake.havirt("cluster", "balance")
    assert rc == 0, err
    assert "->" not in out
    rc, out, err = fake.havirt("node", "maintenance", "node1", "on")
    assert rc == 0, err
    assert "blocking: win10 test: no usable XML in conf/" in out
    assert f"blocking: {LONG}: no usable XML in conf/" in out
    assert all(is_scan(c) for _, c in fake.calls)
    rc, out, err = fake.havirt("--yes", "node", "maintenance", "node1", "on")   # every move blocked
    assert rc == 0 and f"node1 still runs: {LONG}, win10 test" in out, err
    assert fake.changing_calls() == [] and fake.audit_lines() == []


def test_start_of_a_conf_domain_works_beside_odd_names(fake):
    a, b = odd_cluster(fake)
    scan(fake)
    fake.conf("db1", memory_mib=64)
    rc, out, err = fake.havirt("--yes", "domain", "start", "db1", "node2")
    assert rc == 0, err
    assert "db1" in b.domains
    # the name is the identity: only a domain of exactly that name blocks it
    b.domains.pop("db1")
    a.add("db1 ")
    rc, out, err = fake.havirt("--yes", "domain", "start", "db1", "node2")
    assert rc == 0, err
    a.add("web1-copy")
    b.add("web1")
    _, err = fake.refused("--yes", "domain", "start", "web1", "node2")
    assert "web1 is already running on node1" in err and "web1 is already running on node2" in err


def test_import_all_skips_odd_names_and_says_why(fake):
    from conftest import domain_xml
    a = fake.node("node1")
    a.xml["web1"] = domain_xml("web1")
    a.xml[SPACE] = domain_xml("web1").replace("web1", SPACE)
    a.xml[PLUS] = domain_xml("web1").replace("web1", PLUS)
    rc, out, err = fake.havirt("domain", "import", "--all", "--from", "node1")
    assert rc == 0, err
    assert sorted(p.name for p in (fake.home / "conf").iterdir()) == ["web1.xml"]
    assert "havirt: warning: skipped 'win10 test': its name is outside havirt's name rule" in err
    assert "havirt: warning: skipped web+1: its name is outside" in err
    # every name is read one per line and passed as one quoted word, never split by the shell
    command = [c for _, c in fake.calls][0]
    assert "while IFS= read -r d" in command and '--domain "$d"' in command and "$(" not in command


def test_state_round_trip_keeps_every_name_exactly(tmp_path):
    p = tmp_path / "state.yaml"
    s = State()
    for name in ODD + ["", "\x00nul", "quote\"back\\slash"]:
        s.domains[name] = DomainRecord(name=name, node=None)
    save_state(p, s)
    assert set(load_state(p).domains) == set(s.domains)
    # also when edited by hand in block YAML
    p.write_text('format: 1\nnodes: {}\ndomains:\n  "win10 test": {state: running}\n  "web+1": {}\n')
    assert set(load_state(p).domains) == {SPACE, PLUS}


def test_parsers_keep_odd_names_whole():
    stats = "".join(f"Domain: '{n}'\n  state.state=1\n  state.reason=1\n  balloon.current=1024\n\n"
                    for n in ODD + ["it's"])
    assert set(parse_domstats(stats)) == set(ODD) | {"it's"}
    assert parse_names(f"{SEPARATOR}\n{SPACE}\n\n") == [SEPARATOR, SPACE]


def test_printable_escapes_what_would_break_a_line_or_drive_a_terminal():
    from havirt.names import printable
    assert printable("plain é ٣ 😀 a b") == "plain é ٣ 😀 a b"
    assert printable("a\tb\nc\rd\x1b[2Je\x7f\u2028\x85") == "a\\tb\\nc\\rd\\x1b[2Je\\x7f\\u2028\\x85"


def test_validate_reports_odd_names_and_commands_keep_the_rule_for_given_names(fake):
    odd_cluster(fake)
    scan(fake)
    rc, out, err = fake.havirt("cluster", "validate")
    assert rc == 1 and err == "", err
    assert out.count("no-xml") == len(ODD) and "\x1b" not in out
    # names an admin gives keep the rule: one line, exit 2, nothing sent
    sent = len(fake.calls)
    for args in (("domain", "maintenance", SPACE, "on"), ("--yes", "domain", "destroy", ESC)):
        _, err = fake.refused(*args, code=2)
        assert err.count("\n") == 1 and "invalid domain name" in err, err
        assert "\x1b" not in err
    assert len(fake.calls) == sent
