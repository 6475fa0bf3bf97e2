"""The exact text of every command havirt sends to a node or prints, written
out here by hand: a change to any of them shows up as a failing line.

Names from a node (or an admin) that are odd for a shell stay one argument:
each argv is checked to split back into itself, and the scan's loops are
run by sh with a stand-in for virsh that reports the arguments it got.
"""

import shlex
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from facts import cfg, dom, spec, world

from havirt.plan.domains import create_step, migrate_step, plan_shutdown
from havirt.plan.failover import fence_plan
from havirt.remote import commands as remote
from havirt.remote.executor import Executor
from havirt.remote.paramiko_ssh import ParamikoRunner
from havirt.remote.steps import Plan
from havirt.remote.transport import Target
from havirt.store.config import load_config

V = "virsh -c qemu:///system"


@pytest.mark.parametrize("command, text", [
    (remote.create(cfg()), "virsh -c qemu:///system create /dev/stdin"),
    (remote.shutdown(cfg(), "web1"), "virsh -c qemu:///system shutdown web1"),
    (remote.destroy(cfg(), "web1"), "virsh -c qemu:///system destroy web1"),
    (remote.reboot(cfg(), "web1"), "virsh -c qemu:///system reboot web1"),
    (remote.reboot(cfg(), "web1", hard=True), "virsh -c qemu:///system reset web1"),
    (remote.abort_job(cfg(), "web1"), "virsh -c qemu:///system domjobabort web1"),
    (remote.console(cfg(), "web1"), "virsh -c qemu:///system console web1"),
    (remote.create(cfg(), uri="lxc:///system"), "virsh -c lxc:///system create /dev/stdin"),
    (remote.shutdown(cfg(), "ct1", uri=remote.driver_uri(cfg(), "lxc")), "virsh -c lxc:///system shutdown ct1"),
    (remote.destroy(cfg(), "ct1", uri="lxc:///system"), "virsh -c lxc:///system destroy ct1"),
    (remote.console(cfg(), "ct1", uri="lxc:///system"), "virsh -c lxc:///system console ct1"),
    (remote.migrate(cfg(), "web1", "fd00::12", "admin", 2222),
     "virsh -c qemu:///system migrate --live --verbose web1 "
     "'qemu+ssh://admin@[fd00::12]:2222/system' --migrateuri 'tcp://[fd00::12]'"),
    (remote.migrate(cfg(migrate_unsafe=True), "web1", "10.0.0.2", "root", 22),
     "virsh -c qemu:///system migrate --live --verbose --unsafe web1 "
     "qemu+ssh://root@10.0.0.2/system --migrateuri tcp://10.0.0.2"),
    (remote.shutdown(cfg(), "web 1"), "virsh -c qemu:///system shutdown 'web 1'"),
    (remote.destroy(cfg(), "it's"), "virsh -c qemu:///system destroy 'it'\"'\"'s'"),
    (remote.local(["/usr/local/bin/fence", "status", "a b"]), "/usr/local/bin/fence status 'a b'"),
])
def test_argv_commands(command, text):
    assert command.script is None
    assert command.text() == text
    assert shlex.split(text) == list(command.argv)      # every argument stays one argument


def test_the_wait_off_script():
    assert remote.wait_off(cfg(), "web1", 120).text() == (
        "end=$(( $(date +%s) + 120 )); while :; do "
        "s=$(virsh -c qemu:///system domstate web1 2>&1) || case \"$s\" in "
        "*'failed to get domain'*|*'Domain not found'*) exit 0;; "
        "*) printf '%s\\n' \"$s\" >&2; exit 2;; esac; "
        "[ \"$s\" = 'shut off' ] && exit 0; "
        "[ \"$(date +%s)\" -ge \"$end\" ] && exit 1; sleep 1; done")


def test_dump_inactive_named_and_all():
    assert remote.dump_inactive(cfg(), ["web1", "db 1"]).text() == (
        "printf '@@xml %s\\n' web1; virsh -c qemu:///system dumpxml --inactive web1; "
        "printf '@@xml %s\\n' 'db 1'; virsh -c qemu:///system dumpxml --inactive 'db 1'")
    assert remote.dump_inactive(cfg()).text() == (
        "virsh -c qemu:///system list --all --name | while IFS= read -r d; do "
        "[ -n \"$d\" ] || continue; printf '@@xml %s\\n' \"$d\"; "
        "virsh -c qemu:///system dumpxml --inactive --domain \"$d\"; done")


# -- the scan ---------------------------------------------------------------------------

SCAN_HEAD = r"""printf '@@hostname\n'; h=; IFS= read -r h </proc/sys/kernel/hostname || h=$(hostname); printf '%s\n' "$h"
LC_ALL=C; export LC_ALL; nl='
'; said_error() { case "$nl$1" in *"${nl}error:"*) return 0;; esac; return 1; }
o=$(virsh -c qemu:///system 'echo @@lxc-connect; connect lxc:///system; echo @@lxc-list; list --all --name; echo @@lxc-end; echo @@vm-connect; connect qemu:///system; echo @@version; version --daemon; echo @@nodeinfo; nodeinfo; echo @@persistent; list --all --persistent --name; echo @@autostart; list --all --autostart --name; echo @@domstats; domstats --state --balloon --vcpu; echo @@end' 2>&1); rc=$?
printf '@@virsh\n%s\n@@virsh-exit\n%s\n' "$o" "$rc"
lx=${o%%"$nl"@@lxc-end*}; case $lx in "$o") ;; *) c=${lx%%"$nl"@@lxc-list*}; l=${lx#*"$nl"@@lxc-list"$nl"}; if ! said_error "$c" && ! said_error "$l"; then set -f; IFS=$nl; for d in $l; do unset IFS; printf '@@lxc-domain %s\n' "$d"; virsh -c lxc:///system dominfo --domain "$d" 2>&1; done; unset IFS; set +f; fi;; esac
"""
SCAN_TAIL = r"""[ "$rc" = 0 ] || exit 3
"""
PATHS = r"""printf '@@paths\n'
for p in -x.img '/srv/a b.img' /srv/b.img '/srv/it'"'"'s.img'; do if [ -e "$p" ]; then printf '1 %s\n' "$p"; else printf '0 %s\n' "$p"; fi; done
"""
EVERY_RUNNING = r"""{ virsh -c qemu:///system list --name; virsh -c lxc:///system list --name 2>/dev/null; } | while IFS= read -r d; do [ -n "$d" ] || continue; printf '@@xml %s\n' "$d"; virsh -c qemu:///system dumpxml --domain "$d" 2>/dev/null || virsh -c lxc:///system dumpxml --domain "$d" 2>/dev/null; done
"""
NAMED = r"""for d in -x db1 'web 1'; do printf '@@xml %s\n' "$d"; virsh -c qemu:///system dumpxml --domain "$d" 2>/dev/null || virsh -c lxc:///system dumpxml --domain "$d" 2>/dev/null; done
"""
LEASES_NODE1 = r"""printf '@@leases\n'
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
  m="havirt-lease-mark node1 $h"; f="$ls/.havirt-lease-node1"; l=; IFS= read -r l 2>/dev/null <"$f"
  if [ "$l" = "$m" ] || { printf '%s\n' "$m" > "$f.$$" && mv -f "$f.$$" "$f"; } 2>/dev/null; then echo marked=yes; else echo marked=no; fi
  for g in "$ls"/.havirt-lease-*; do [ -f "$g" ] || continue; l=; IFS= read -r l < "$g"; printf 'seen=%.300s\n' "$l"; done
fi
"""
ODD_PATHS = ["/srv/b.img", "/srv/a b.img", "/srv/it's.img", "-x.img", "/srv/b.img"]
ODD_NAMES = ["web 1", "db1", "-x"]


@pytest.mark.parametrize("paths, dump_running, node, text", [
    ((), False, None, SCAN_HEAD + SCAN_TAIL),
    (ODD_PATHS, False, None, SCAN_HEAD + PATHS + SCAN_TAIL),
    ((), True, None, SCAN_HEAD + EVERY_RUNNING + SCAN_TAIL),
    ((), ODD_NAMES, None, SCAN_HEAD + NAMED + SCAN_TAIL),
    ((), False, "node1", SCAN_HEAD + LEASES_NODE1 + SCAN_TAIL),
    (ODD_PATHS, True, "node1", SCAN_HEAD + LEASES_NODE1 + PATHS + EVERY_RUNNING + SCAN_TAIL),
])
def test_the_scan_script(paths, dump_running, node, text):
    assert remote.scan_script(cfg(), paths, dump_running, node).text() == text


STUB_VIRSH = """#!/bin/sh
case "$*" in
  *'echo @@version'*) echo '@@end' ;;
  *) printf '[%s]' "$@"; echo ;;
esac
"""


def test_odd_paths_and_names_stay_one_argument_in_the_scan(tmp_path):
    """The scan, run here by sh (no lease part: that one reads this host's
    libvirt), with a stand-in virsh that prints each argument in brackets."""
    virsh = tmp_path / "virsh"
    virsh.write_text(STUB_VIRSH)
    virsh.chmod(0o755)
    (tmp_path / "a b.img").write_text("")
    paths = [str(tmp_path / "a b.img"), str(tmp_path / "it's.img")]
    script = remote.scan_script(cfg(virsh_command=str(virsh)), paths, ODD_NAMES).text()
    p = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    body = p.stdout.split("@@paths\n", 1)[1]
    assert body == (f"1 {tmp_path}/a b.img\n0 {tmp_path}/it's.img\n"
                    "@@xml -x\n[-c][qemu:///system][dumpxml][--domain][-x]\n"
                    "@@xml db1\n[-c][qemu:///system][dumpxml][--domain][db1]\n"
                    "@@xml web 1\n[-c][qemu:///system][dumpxml][--domain][web 1]\n")


# -- dry-run lines, as printed ------------------------------------------------------------

@pytest.fixture
def show(tmp_path):
    """Executor.show with the real SSH description of each node; node3 is
    reached as admin on port 2222 of an IPv6 address, and has a fence."""
    (tmp_path / "config.yaml").write_text(
        "fence:\n  node3:\n"
        "    power_off: \"/usr/local/bin/fence --off {node} {address}\"\n"
        "    power_status: \"ipmitool -H {address} -P 'pass word' chassis power status\"\n"
        "    off_when: \"is off\"\n    timeout: 30\n")
    c = load_config(tmp_path / "config.yaml")
    cluster, state = world({"node1": {"domains": [dom("web1")]}, "node2": {}, "node3": {}})
    state.nodes["node3"].address, state.nodes["node3"].user, state.nodes["node3"].port = \
        "fd00::13", "admin", 2222
    targets = {n: Target(n, r.address, r.user, r.port) for n, r in state.nodes.items()}
    ex = Executor(ParamikoRunner(c.ssh, targets), c, SimpleNamespace(root=Path("/home/havirt")), None)
    return SimpleNamespace(lines=lambda *steps: ex.show(Plan(steps=list(steps))), cfg=c,
                           cluster=cluster, state=state)


def test_a_step_with_stdin(show):
    web1 = spec("web1")
    web1.path = "/home/havirt/conf/web1.xml"
    assert show.lines(create_step(show.cfg, web1, "node2"), create_step(show.cfg, web1, "node3")) == [
        "ssh root@10.0.0.2 'virsh -c qemu:///system create /dev/stdin' < conf/web1.xml",
        "ssh -p 2222 admin@fd00::13 'virsh -c qemu:///system create /dev/stdin' < conf/web1.xml"]


def test_shutdown_wait_and_the_force_off_step(show):
    plan = plan_shutdown(show.cluster, show.cfg, "web1", 120, True)
    assert show.lines(*plan.steps) == [
        "ssh root@10.0.0.1 'virsh -c qemu:///system shutdown web1'",
        "ssh root@10.0.0.1 'end=$(( $(date +%s) + 120 )); while :; do "
        "s=$(virsh -c qemu:///system domstate web1 2>&1) || case \"$s\" in "
        "*'\"'\"'failed to get domain'\"'\"'*|*'\"'\"'Domain not found'\"'\"'*) exit 0;; "
        "*) printf '\"'\"'%s\\n'\"'\"' \"$s\" >&2; exit 2;; esac; "
        "[ \"$s\" = '\"'\"'shut off'\"'\"' ] && exit 0; "
        "[ \"$(date +%s)\" -ge \"$end\" ] && exit 1; sleep 1; done'",
        "# only if still running after the wait:\n"
        "ssh root@10.0.0.1 'virsh -c qemu:///system destroy web1'"]


def test_a_live_migration_to_an_ipv6_node(show):
    assert show.lines(migrate_step(show.state, show.cfg, "web1", "node1", "node3", 60)) == [
        "ssh root@10.0.0.1 'virsh -c qemu:///system migrate --live --verbose web1 "
        "'\"'\"'qemu+ssh://admin@[fd00::13]:2222/system'\"'\"' --migrateuri "
        "'\"'\"'tcp://[fd00::13]'\"'\"''"]


def test_the_fence_steps_local_and_local_until(show):
    assert show.lines(*fence_plan(show.state, show.cfg, "node3").steps) == [
        "/usr/local/bin/fence --off node3 fd00::13",
        "ipmitool -H fd00::13 -P 'pass word' chassis power status   # until it prints /is off/"]


def test_evacuation_prints_its_moves_as_the_executor_shows_them(fake):
    a = fake.node("node1")
    fake.node("node2")
    fake.conf("web1")
    a.add("web1")
    fake.real_describe = True
    rc, out, err = fake.havirt("node", "maintenance", "node1", "on")
    assert rc == 0, err
    assert (f"ssh root@10.0.0.1 '{V} migrate --live --verbose web1 "
            "qemu+ssh://root@10.0.0.2/system --migrateuri tcp://10.0.0.2'") in out.splitlines()


# -- disk images ----------------------------------------------------------------------------

@pytest.mark.parametrize("command, text", [
    (remote.create_image("/srv/pool/web3-1.qcow2", 20480),
     "[ ! -e /srv/pool/web3-1.qcow2 ] && [ ! -L /srv/pool/web3-1.qcow2 ] || "
     "{ echo /srv/pool/web3-1.qcow2 exists: not overwritten >&2; exit 1; }; "
     "qemu-img create -q -f qcow2 /srv/pool/web3-1.qcow2 20G || { rm -f /srv/pool/web3-1.qcow2; exit 1; }"),
    (remote.create_image("/srv/pool/web3-2.qcow2", 512),
     "[ ! -e /srv/pool/web3-2.qcow2 ] && [ ! -L /srv/pool/web3-2.qcow2 ] || "
     "{ echo /srv/pool/web3-2.qcow2 exists: not overwritten >&2; exit 1; }; "
     "qemu-img create -q -f qcow2 /srv/pool/web3-2.qcow2 512M || { rm -f /srv/pool/web3-2.qcow2; exit 1; }"),
    (remote.overlay_image("/srv/p q/b.qcow2", "/srv/p q/a.qcow2", "qcow2"),
     "[ ! -e '/srv/p q/b.qcow2' ] && [ ! -L '/srv/p q/b.qcow2' ] || "
     "{ echo '/srv/p q/b.qcow2' exists: not overwritten >&2; exit 1; }; "
     "qemu-img create -q -f qcow2 -F qcow2 -b '/srv/p q/a.qcow2' '/srv/p q/b.qcow2' || "
     "{ rm -f '/srv/p q/b.qcow2'; exit 1; }"),
    (remote.copy_image("/srv/pool/a.img", "raw", "/srv/pool/b.qcow2"),
     "[ ! -e /srv/pool/b.qcow2 ] && [ ! -L /srv/pool/b.qcow2 ] || "
     "{ echo /srv/pool/b.qcow2 exists: not overwritten >&2; exit 1; }; "
     "qemu-img convert -f raw -O qcow2 /srv/pool/a.img /srv/pool/b.qcow2 || "
     "{ rm -f /srv/pool/b.qcow2; exit 1; }"),
    (remote.remove_image("/srv/pool/b.qcow2"),
     "if [ -f /srv/pool/b.qcow2 ] && [ ! -L /srv/pool/b.qcow2 ]; then rm -- /srv/pool/b.qcow2; else "
     "echo /srv/pool/b.qcow2 is not a regular file: not removed >&2; exit 1; fi"),
    (remote.images(["/srv/pool"], ["/dev/sdb"]),
     "n=0\n"
     "for f in /srv/pool/*; do [ -f \"$f\" ] && [ ! -L \"$f\" ] || continue; "
     "case \"$f\" in *[[:cntrl:]]*) continue;; esac; n=$((n+1)); printf '@@image %s\\n%s\\n' \"$n\" \"$f\"; "
     "if [ -b \"$f\" ]; then echo block; elif [ ! -e \"$f\" ]; then echo missing; elif [ -f \"$f\" ]; "
     "then echo file; qemu-img info -U --backing-chain --output=json \"$f\" 2>&1; else echo other; fi; done\n"
     "for f in /dev/sdb; do n=$((n+1)); printf '@@image %s\\n%s\\n' \"$n\" \"$f\"; "
     "if [ -b \"$f\" ]; then echo block; elif [ ! -e \"$f\" ]; then echo missing; elif [ -f \"$f\" ]; "
     "then echo file; qemu-img info -U --backing-chain --output=json \"$f\" 2>&1; else echo other; fi; done\n"
     "exit 0\n"),
])
def test_image_commands(command, text):
    assert command.text() == text


def test_the_image_scripts_with_the_real_qemu_img(tmp_path):
    """Run by sh in a folder: what they make, what they refuse, what the parser reads."""
    from havirt.parse.images import parse_images

    def sh(command):
        return subprocess.run(["sh", "-c", command.text()], capture_output=True, text=True, timeout=60)
    pool = tmp_path / "pool x"
    pool.mkdir()
    base, over, copy = str(pool / "base.qcow2"), str(pool / "over.qcow2"), str(pool / "copy.qcow2")
    assert sh(remote.create_image(base, 64)).returncode == 0
    again = sh(remote.create_image(base, 128))
    assert again.returncode == 1 and again.stderr == f"{base} exists: not overwritten\n"
    assert sh(remote.overlay_image(over, base, "qcow2")).returncode == 0
    assert sh(remote.copy_image(over, "qcow2", copy)).returncode == 0
    (pool / "link.qcow2").symlink_to(base)
    (pool / "bad\nname").write_text("x")
    (tmp_path / "plain.raw").write_bytes(b"\0" * 4096)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "qcow2", "-b", "/gone",
                    str(pool / "unreadable.qcow2"), "64M"], check=True)      # its backing file is gone
    failed = sh(remote.copy_image(str(tmp_path / "none"), "raw", str(pool / "c2.qcow2")))
    assert failed.returncode == 1 and not (pool / "c2.qcow2").exists()
    p = sh(remote.images([str(pool)], [str(tmp_path / "plain.raw"), "/nonexistent", "/dev/null"]))
    facts = parse_images(p.stdout, "here")
    assert p.returncode == 0 and "Could not open" in facts[str(pool / "unreadable.qcow2")].error
    del facts[str(pool / "unreadable.qcow2")]
    assert sorted(facts) == sorted(["/dev/null", "/nonexistent", copy, base, over, str(tmp_path / "plain.raw")])
    assert (facts[base].format, facts[base].virtual_size, facts[base].backing) == ("qcow2", 64 << 20, ())
    assert (facts[over].backing, facts[over].backing_formats) == ((base,), ("qcow2",))
    assert facts[copy].backing == () and facts[str(tmp_path / "plain.raw")].format == "raw"
    assert [facts[x].kind for x in ("/nonexistent", "/dev/null")] == ["missing", "other"]
    assert sh(remote.remove_image(str(pool / "link.qcow2"))).returncode == 1      # a link stays
    assert sh(remote.remove_image(over)).returncode == 0 and not (pool / "over.qcow2").exists()


def test_the_scan_takes_only_uris_config_yaml_accepts():
    """virsh splits its command string itself: a URI goes in as it is, and
    one that config.yaml would refuse (store.config.URI) never does."""
    assert remote.virsh_word("qemu+ssh://root@h/system?no_verify=1") == "qemu+ssh://root@h/system?no_verify=1"
    for bad in ("lxc:///system; list", "qemu:///it's", "qemu:///a b", "#x:"):
        with pytest.raises(ValueError):
            remote.virsh_word(bad)
