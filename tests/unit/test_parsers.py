"""havirt.parsers against real virsh output (libvirt 9.0.0, tests/fixtures/virsh).

scan-node1.out/.err and scan-libvirt-down.out/.err are the real output of
havirt's own scan script run on a lab node (the second with a virsh URI whose
socket does not exist). domstats-shutoff-paused.txt is hand-written in the
format of the real domstats.txt (the lab may not be changed to capture one).
"""

from pathlib import Path

import pytest

from havirt.errors import ParseError
from havirt.parse.virsh import (
    DomainFact,
    parse_domstats,
    parse_names,
    parse_nodeinfo,
    parse_paths,
    parse_scan,
    parse_version,
    split_sections,
)

VIRSH = Path(__file__).resolve().parents[1] / "fixtures" / "virsh"


def fx(name):
    return (VIRSH / name).read_text()


# -- nodeinfo --------------------------------------------------------------------------

def test_nodeinfo_fixture():
    assert parse_nodeinfo(fx("nodeinfo.txt")) == {
        "cpu_model": "x86_64", "cpus": 2, "memory_mib": 4417748 // 1024}
    assert parse_nodeinfo(fx("nodeinfo.txt"))["memory_mib"] == 4314


def test_nodeinfo_line_without_colon_names_the_line():
    text = fx("nodeinfo.txt").replace("NUMA cell(s):        1", "garbage here")
    with pytest.raises(ParseError, match=r"nodeinfo, line 7: 'garbage here': expected 'Key: value'"):
        parse_nodeinfo(text)


def test_nodeinfo_bad_values():
    with pytest.raises(ParseError, match=r"line 2: .*CPU\(s\) is not a number"):
        parse_nodeinfo("CPU model: x\nCPU(s): two\nMemory size: 1024 KiB\n")
    with pytest.raises(ParseError, match=r"line 2: .*memory size is not 'N KiB'"):
        parse_nodeinfo("CPU(s): 2\nMemory size: 4 GiB\n")
    with pytest.raises(ParseError, match=r"no 'CPU\(s\)' or 'Memory size' line"):
        parse_nodeinfo("CPU(s): 2\n")


# -- version ---------------------------------------------------------------------------

def test_version_prefers_the_daemon():
    assert parse_version(fx("version.txt")) == "9.0.0"
    text = fx("version.txt").replace("Running against daemon: 9.0.0", "Running against daemon: 10.1.0")
    assert parse_version(text) == "10.1.0"


def test_version_falls_back_to_library_then_none():
    assert parse_version("Compiled against library: libvirt 9.0.0\nUsing library: libvirt 8.5.0\n") == "8.5.0"
    assert parse_version("") is None
    assert parse_version("nonsense\n") is None


# -- domstats --------------------------------------------------------------------------

def test_domstats_fixture_two_running_domains():
    d = parse_domstats(fx("domstats.txt"))
    assert list(d) == ["local1", "disk1"]
    assert d["local1"] == DomainFact(name="local1", state="running", state_code=1, reason=1,
                                     memory_mib=32, vcpus=1)
    assert d["disk1"].memory_mib == 48 and d["disk1"].vcpus == 1
    assert d["disk1"].active and not d["disk1"].migrating


def test_domstats_shut_off_and_paused():
    d = parse_domstats(fx("domstats-shutoff-paused.txt"))
    assert list(d) == ["run1", "off1", "incoming1", "paused1"]
    # balloon.current wins over balloon.maximum, vcpu.current over vcpu.maximum
    assert (d["run1"].memory_mib, d["run1"].vcpus) == (512, 2)
    off = d["off1"]
    assert (off.state, off.state_code, off.reason, off.memory_mib, off.vcpus) == ("shut off", 5, 0, None, None)
    assert not off.active and not off.migrating
    inc = d["incoming1"]
    assert (inc.state, inc.reason) == ("paused", 2)
    assert inc.active and inc.migrating
    p = d["paused1"]
    assert p.active and not p.migrating
    assert (p.memory_mib, p.vcpus) == (128, 2)   # the maximums when no current


def test_domstats_postcopy_reasons_count_as_migrating():
    for reason, migrating in ((12, True), (13, True), (5, False)):
        d = parse_domstats(f"Domain: 'x'\n  state.state=3\n  state.reason={reason}\n")
        assert d["x"].migrating is migrating


def test_domstats_unknown_state_code_is_named():
    d = parse_domstats("Domain: 'x'\n  state.state=42\n")
    assert d["x"].state == "state 42" and d["x"].active


def test_domstats_empty_output_is_no_domains():
    assert parse_domstats("") == {}
    assert parse_domstats("\n") == {}


@pytest.mark.parametrize("text, message", [
    ("Domain: 'a'\n  state.state=1\ngarbage\n", r"domstats, line 3: 'garbage': expected key=value"),
    ("  state.state=1\n", r"domstats, line 1: 'state.state=1': value before any 'Domain:' line"),
    ("Domain: 'a'\n  state.state=one\n", r"domstats, line 2: 'state.state=one': state.state is not a number"),
    ("Domain: 'a'\n  state.state=1\n  balloon.current=\n", r"line 3: .*balloon.current is not a number"),
    ("Domain: 'a'\n  state.reason=1\n", r"domain 'a' has no state.state"),
])
def test_domstats_errors_name_the_line(text, message):
    with pytest.raises(ParseError, match=message):
        parse_domstats(text)


# -- names, sections, paths ------------------------------------------------------------

def test_parse_names():
    assert parse_names("web1\n\n  db1  \n\n") == ["web1", "  db1  "]   # names as printed
    assert parse_names("win10 test\nweb+1\n") == ["win10 test", "web+1"]
    assert parse_names("") == []
    assert parse_names("\n") == []


def test_split_sections():
    text = "ignored before any marker\n@@a\n1\n2\n@@b\n@@ c \nx\n"
    assert split_sections(text) == {"a": "1\n2", "b": "", "c": "x"}
    assert split_sections("") == {}


def test_split_sections_real_scan_output():
    s = split_sections(fx("scan-node1.out"))
    assert list(s) == ["hostname", "virsh", "lxc-connect", "lxc-list", "lxc-end", "vm-connect",
                       "version", "nodeinfo", "persistent", "autostart", "domstats", "end",
                       "virsh-exit", "leases", "paths"]
    assert s["hostname"] == "node1"
    assert s["virsh-exit"] == "0"


def test_parse_paths():
    assert parse_paths("1 /srv/a.qcow2\n0 /srv/with space.img\n\n") == {
        "/srv/a.qcow2": True, "/srv/with space.img": False}
    assert parse_paths("") == {}


@pytest.mark.parametrize("line", ["2 /srv/a", "1", "yes /srv/a", "/srv/a"])
def test_parse_paths_errors(line):
    with pytest.raises(ParseError, match=r"path check, line 2: .*expected '0 PATH' or '1 PATH'"):
        parse_paths("1 /ok\n" + line + "\n")


# -- the whole scan --------------------------------------------------------------------

def test_scan_real_complete_output():
    f = parse_scan("node1", fx("scan-node1.out"), fx("scan-node1.err"))
    assert f.reachable and f.error is None
    assert (f.name, f.hostname, f.libvirt_version, f.cpus, f.memory_mib) == (
        "node1", "node1", "9.0.0", 2, 24105)
    assert f.lxc is True            # the node's LXC driver answered, with no containers
    assert f.leases is True and f.lease_problem is None
    assert f.lockspace.endswith("/tests/lab/run/shared/locks") and "node1" in f.lease_marks
    assert sorted(f.domains) == ["disk2", "local1"]
    assert f.domains["disk2"].memory_mib == 48 and f.domains["local1"].memory_mib == 32
    assert not any(d.persistent or d.autostart for d in f.domains.values())
    assert f.paths == {"/etc/hostname": True, "/nonexistent/disk.qcow2": False}
    assert f.xml == {}


def test_scan_persistent_autostart_and_xml_sections():
    text = fx("scan-node1.out").replace("@@persistent\n", "@@persistent\nlocal1\nghost\n") \
        .replace("@@autostart\n", "@@autostart\nlocal1\n") + "@@xml disk2\n<domain/>\n"
    f = parse_scan("node1", text)
    assert f.domains["local1"].persistent and f.domains["local1"].autostart
    assert not f.domains["disk2"].persistent
    assert "ghost" not in f.domains          # a name not in domstats is not invented
    assert f.xml == {"disk2": "<domain/>"}


def test_scan_real_libvirt_down_is_unreachable_with_the_virsh_error():
    f = parse_scan("node1", fx("scan-libvirt-down.out"), fx("scan-libvirt-down.err"), 3)
    assert not f.reachable
    assert f.error == ("virsh failed: error: Failed to connect socket to "
                       "'/nonexistent/libvirt-sock': No such file or directory")
    assert f.hostname == "node1"
    assert f.domains == {} and f.cpus is None


def test_scan_without_end_marker_is_unreachable():
    text = fx("scan-node1.out").replace("@@end\n", "")
    f = parse_scan("node1", text, "error: Disconnected from qemu:///system due to end of file\n")
    assert not f.reachable
    assert f.error == "virsh failed: error: Disconnected from qemu:///system due to end of file"
    assert f.domains == {}


def test_scan_incomplete_without_stderr_names_the_exit_status():
    f = parse_scan("node1", "@@hostname\nnode1\n@@virsh-exit\n127\n@@virsh-error\n", "", 3)
    assert not f.reachable and f.error == "virsh failed: exit 127; output incomplete"
    f = parse_scan("node1", "", "")
    assert not f.reachable and f.error == "virsh failed: exit ?; output incomplete"


def test_scan_error_relayed_on_stdout_counts_without_stderr():
    text = fx("scan-node1.out").replace("@@end\n", "error: Disconnected\n@@end\n")
    f = parse_scan("node1", text, "", 3)
    assert not f.reachable and f.error == "virsh failed: error: Disconnected"
    f = parse_scan("node1", fx("scan-node1.out"), "", 3)     # the script's own verdict
    assert not f.reachable and f.error == "virsh failed: exit 3; output incomplete"


def test_scan_garbage_in_domstats_names_the_line():
    text = fx("scan-node1.out").replace("  state.reason=1\n", "  state.reason=1\n%%% garbage %%%\n", 1)
    with pytest.raises(ParseError, match=r"domstats, line 4: '%%% garbage %%%': expected key=value"):
        parse_scan("node1", text)


def test_scan_garbage_in_nodeinfo_names_the_line():
    text = fx("scan-node1.out").replace("CPU(s):              2", "CPU(s)  two")
    with pytest.raises(ParseError, match=r"nodeinfo, line 2: 'CPU\(s\)  two'"):
        parse_scan("node1", text)


def test_scan_garbage_in_paths_names_the_line():
    text = fx("scan-node1.out").replace("0 /nonexistent/disk.qcow2", "maybe /x")
    with pytest.raises(ParseError, match=r"path check, line 2: 'maybe /x'"):
        parse_scan("node1", text)


# -- the lease probe -------------------------------------------------------------------

LEASES_ON = ("lock_manager=lockd\nlockspace=/srv/locks\nauto_disk_leases=\nvirtlockd=yes\n"
             "lockd_loaded=yes\nlockd_conf_newer=no\nmarked=yes\n"
             "seen=havirt-lease-mark node1 host1\nseen=havirt-lease-mark node2 host2\n"
             "seen=something else\n")


@pytest.mark.parametrize("change, problem", [
    ({}, None),
    ({"lockd_loaded=yes": "lockd_loaded=no"},
     'qemu.conf asks for lock_manager = "lockd" but libvirtd has not loaded it: restart libvirtd'),
    ({"lockd_loaded=yes": "lockd_loaded=no", "lock_manager=lockd": "lock_manager="},
     'qemu.conf has no lock_manager = "lockd"'),
    ({"lockd_loaded=yes\n": ""}, "cannot tell which lock manager libvirtd uses (no /run/libvirtd.pid)"),
    ({"lockspace=/srv/locks": "lockspace="}, "qemu-lockd.conf has no file_lockspace_dir"),
    ({"auto_disk_leases=": "auto_disk_leases=0"}, "qemu-lockd.conf sets auto_disk_leases = 0"),
    ({"virtlockd=yes": "virtlockd=no"}, "virtlockd is not running (no /run/libvirt/virtlockd-sock)"),
    ({"marked=yes\n": ""}, "the lockspace folder /srv/locks does not exist"),
    ({"marked=yes": "marked=no"}, "cannot write in the lockspace /srv/locks"),
    ({"lockd_conf_newer=no": "lockd_conf_newer=yes"},
     "qemu-lockd.conf changed after libvirtd started: restart libvirtd"),
])
def test_lease_probe(change, problem):
    text = LEASES_ON
    for old, new in change.items():
        text = text.replace(old, new)
    facts = parse_scan("node1", fx("scan-node1.out").split("@@leases")[0] + "@@leases\n" + text)
    assert facts.reachable and facts.lease_problem == problem
    assert facts.leases is (problem is None)
    assert facts.lockspace == ("/srv/locks" if "lockspace=/srv/locks" in text else None)
    assert facts.lease_marks == {"node1": "host1", "node2": "host2"}


def test_lease_probe_garbage_names_the_line():
    with pytest.raises(ParseError, match=r"lease probe, line 1: 'oops'"):
        parse_scan("node1", fx("scan-node1.out").split("@@leases")[0] + "@@leases\noops\n")


def test_is_lease_refusal():
    from havirt.parse.virsh import is_lease_refusal
    assert is_lease_refusal("error: resource busy: Lockspace resource '5f31bc84' is locked")
    assert not is_lease_refusal("error: Failed to connect socket")
