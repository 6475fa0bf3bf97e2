"""domain set against the fake cluster: memory and vCPUs changed live where the
domain runs (up to the maximum it started with, growth checked by the fit
rules), in conf/ for its next start above that, in conf/ alone while it is
off everywhere; and the refusals every change in place shares."""

import json

from fake_live import WEB1, V, conf_text, drift_of, history, said_no, setup
from fakes import home_snapshot

from havirt.parse.domxml import parse_domain_xml

BALLOON = ("ssh root@10.0.0.1 'end=$(( $(date +%s) + 20 )); while :; do s=$(virsh -c qemu:///system "
           "domstats --balloon web1 2>&1) || { echo \"$s\" >&2; exit 2; }; echo \"$s\" | grep -qwF "
           "balloon.current={kib} && exit 0; [ \"$(date +%s)\" -ge \"$end\" ] && {{ echo web1 has not "
           "come to {mib} MiB within 20 s: its guest does not follow the balloon, or not yet >&2; exit 1; "
           "}}; sleep 1; done'")


def balloon(mib):
    return BALLOON.replace("{{", "{").replace("}}", "}").replace("{kib}", str(mib * 1024)) \
        .replace("{mib}", str(mib))


def test_set_dry_run_prints_the_exact_commands_and_what_conf_gets(fake):
    setup(fake)
    before = home_snapshot(fake.home)
    rc, out, err = fake.havirt("domain", "set", "web1", "--memory", "768", "--vcpus", "2")
    assert rc == 0, err
    assert out.splitlines() == [
        f"ssh root@10.0.0.1 '{V} setvcpus web1 2 --live'",
        f"ssh root@10.0.0.1 '{V} setmem web1 768M --live'",
        balloon(768),
        "# then conf/web1.xml is written with 2 vCPUs, memory 768 MiB (the previous version kept in "
        "conf/.history/web1/; -v prints the new definition)",
        "dry run: nothing was changed; add --yes (havirt --yes ...) to execute"]
    assert home_snapshot(fake.home) == before and fake.audit_lines() == []
    assert fake.nodes["node1"].domains["web1"].memory_mib == 512
    rc, out, err = fake.havirt("-v", "domain", "set", "web1", "--memory", "768")
    assert rc == 0 and "<currentMemory unit='MiB'>768</currentMemory>" in err, err


def test_set_changes_the_running_domain_and_conf_and_leaves_no_drift(fake):
    setup(fake)
    rc, out, err = fake.havirt("--yes", "domain", "set", "web1", "--memory", "768", "--vcpus", "2")
    assert rc == 0, err
    d = fake.nodes["node1"].domains["web1"]
    assert (d.memory_mib, d.vcpus) == (768, 2)
    spec = parse_domain_xml(conf_text(fake))
    assert (spec.memory_mib, spec.vcpus) == (768, 2)
    assert "<vcpu placement='static'>2</vcpu>" in conf_text(fake)       # current = the maximum
    assert conf_text(fake) == WEB1.replace(">512<", ">768<").replace(" current='1'", "")
    (kept,) = history(fake)
    assert kept.endswith("-set.xml")
    assert (fake.home / "conf" / ".history" / "web1" / kept).read_text() == WEB1
    lines = out.splitlines()
    assert lines[:3] == ["set the vCPUs of web1 to 2 on node1: done",
                         "set the memory of web1 to 768 MiB on node1: done",
                         "wait up to 20 s for the guest of web1 to follow the balloon on node1: done"]
    assert lines[3] == "web1 on node1 runs with 2 vCPUs, memory 768 MiB (its running definition, read again)"
    assert lines[4] == f"saved conf/web1.xml (the previous version is in conf/.history/web1/{kept})"
    audit = [json.loads(x) for x in fake.audit_lines()]
    assert [a["remote"] for a in audit][:2] == [f"{V} setvcpus web1 2 --live", f"{V} setmem web1 768M --live"]
    assert audit[2]["remote"].startswith("end=$(( $(date +%s) + 20 ))") and len(audit) == 3
    assert all(a["outcome"] == "ok" for a in audit)
    assert drift_of(fake) == []
    assert fake.state().domains["web1"].memory_mib == 768


def test_set_lower_then_back_up_within_the_maximum(fake):
    setup(fake)
    assert fake.havirt("--yes", "domain", "set", "web1", "--memory", "256")[0] == 0
    assert fake.havirt("--yes", "domain", "set", "web1", "--memory", "1024")[0] == 0
    assert fake.nodes["node1"].domains["web1"].memory_mib == 1024
    assert "<currentMemory unit='MiB'>1024</currentMemory>" in conf_text(fake)
    assert len(history(fake)) == 2 and drift_of(fake) == []


def test_growth_beyond_what_the_node_holds_is_refused_with_the_numbers(fake):
    setup(fake)
    fake.records["node1"].memory_cap_mib = 700
    fake.save_state()
    err = said_no(fake, ["--yes", "domain", "set", "web1", "--memory", "1024"], 3,
                  "refused: web1 cannot grow on node1; memory: node1 can give domains 700 MiB (cap 700 "
                  "MiB), 512 MiB are allocated to 1 running domain(s) (web1 holds 512 MiB); web1 at 1024 "
                  "MiB needs 512 MiB more: 324 MiB short")
    assert "\n" == err[-1]
    assert fake.havirt("--yes", "domain", "set", "web1", "--memory", "600")[0] == 0   # 88 MiB more fits


def test_vcpu_growth_beyond_the_ratio_is_refused(fake):
    setup(fake)
    fake.write_config(reserve={"memory_mib": 1024, "vcpu_ratio": 0.25})      # 4 CPUs: 1 vCPU
    said_no(fake, ["domain", "set", "web1", "--vcpus", "2"], 3,
            "vCPUs: node1 has 4 CPUs and 1 vCPUs allocated (web1 holds 1); web1 at 2 would make "
            "0.50 per CPU, over the limit of 0.25")


def test_shrinking_is_never_refused_by_the_fit_rules(fake):
    setup(fake)
    fake.records["node1"].memory_cap_mib = 100          # already over: shrinking helps
    fake.save_state()
    assert fake.havirt("--yes", "domain", "set", "web1", "--memory", "64")[0] == 0


def test_above_the_maximum_waits_for_the_next_start_and_says_so(fake):
    setup(fake)
    rc, out, err = fake.havirt("domain", "set", "web1", "--memory", "2048", "--vcpus", "4")
    assert rc == 0, err
    assert out.splitlines()[:2] == [
        "4 vCPUs is above the 2 vCPUs web1 started with, the most it can have live: it runs on with "
        "1 vCPU, and conf/ gets 4 vCPUs for its next start",
        "memory 2048 MiB is above the memory 1024 MiB web1 started with, the most it can have live: "
        "it runs on with memory 512 MiB, and conf/ gets memory 2048 MiB for its next start"]
    assert "ssh" not in out                            # nothing to run on a node
    rc, out, err = fake.havirt("--yes", "domain", "set", "web1", "--memory", "2048", "--vcpus", "4")
    assert rc == 0, err
    assert fake.changing_calls() == []
    spec = parse_domain_xml(conf_text(fake))
    assert (spec.memory_mib, spec.vcpus) == (2048, 4)
    assert "<memory unit='MiB'>2048</memory>" in conf_text(fake) and "<vcpu placement='static'>4</vcpu>" \
        in conf_text(fake)
    assert out.splitlines()[-1] == (
        "4 vCPUs, memory 2048 MiB: at the next start of web1, which runs on node1 as it was (until then "
        "it differs from conf/: memory 512 MiB running, 2048 MiB in conf/; vCPUs 1 running, 4 in conf/)")
    assert drift_of(fake) == ["memory 512 MiB running, 2048 MiB in conf/", "vCPUs 1 running, 4 in conf/"]


def test_a_domain_off_everywhere_changes_in_conf_only(fake):
    setup(fake, run_on=None)
    rc, out, err = fake.havirt("domain", "set", "web1", "--memory", "4096")
    assert rc == 0 and out.splitlines()[0].startswith("# then conf/web1.xml is written with memory 4096"), out
    rc, out, err = fake.havirt("--yes", "domain", "set", "web1", "--memory", "4096", "--vcpus", "2")
    assert rc == 0, err
    assert fake.changing_calls() == []
    assert parse_domain_xml(conf_text(fake)).memory_mib == 4096
    assert out.splitlines()[-1] == "web1 is off on every node: it starts with 2 vCPUs, memory 4096 MiB"
    rc, out, err = fake.havirt("--yes", "domain", "set", "web1", "--memory", "4096")
    assert rc == 0 and out.splitlines() == ["web1 has memory 4096 MiB in conf/ already"], out
    assert len(history(fake)) == 1


def test_nothing_to_change_says_so_and_writes_nothing(fake):
    setup(fake)
    before = home_snapshot(fake.home)
    rc, out, err = fake.havirt("--yes", "domain", "set", "web1", "--memory", "512", "--vcpus", "1")
    assert rc == 0, err
    assert out.splitlines() == ["web1 has 1 vCPU already, running and in conf/",
                                "web1 has memory 512 MiB already, running and in conf/"]
    assert home_snapshot(fake.home)["conf"] == before["conf"] and fake.changing_calls() == []


def test_a_guest_that_does_not_follow_the_balloon_is_said_and_conf_stays(fake):
    setup(fake)
    fake.nodes["node1"].domains["web1"].follows_balloon = False
    before = conf_text(fake)
    rc, out, err = fake.havirt("--yes", "domain", "set", "web1", "--memory", "256", "--vcpus", "2")
    assert rc == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("havirt: wait up to 20 s for the guest of web1 to follow the balloon failed on "
                          "node1: exit 1: web1 has not come to 256 MiB within 20 s: its guest does not "
                          "follow the balloon, or not yet; conf/web1.xml now has only what the running "
                          "domain shows: with 2 vCPUs"), err
    assert parse_domain_xml(conf_text(fake)).memory_mib == 512 and conf_text(fake) != before
    assert parse_domain_xml(conf_text(fake)).vcpus == 2
    assert drift_of(fake) == []          # conf/ says what runs


def test_set_needs_something_to_set_and_a_known_domain(fake):
    setup(fake)
    said_no(fake, ["domain", "set", "web1"], 2, "nothing to set: give --memory, --vcpus or both")
    said_no(fake, ["domain", "set", "web9", "--memory", "64"], 2, "web9")
    said_no(fake, ["domain", "set", "web1", "--memory", "0"], 2, "--memory")
    said_no(fake, ["domain", "set", "web1", "--memory", "64", "--timeout", "0"], 2, "--timeout")


# -- the refusals every change in place shares ---------------------------------------------

def test_a_node_that_does_not_answer_is_refused_as_the_presence_rule_says(fake):
    setup(fake, nodes=("node1", "node2", "node3"))
    fake.nodes["node3"].reachable = False
    for args in (["domain", "set", "web1", "--memory", "256"],
                 ["domain", "attach-nic", "web1", "--network", "bridge=br0"],
                 ["domain", "detach-disk", "web1", "vda"],
                 ["domain", "resize-disk", "web1", "vda", "2"]):
        said_no(fake, args, 3, "refused: web1 is left as it is; node node3 did not answer (connect timed "
                               "out after 5 s): web1 might run there (cannot prove web1 runs only once)")
    fake.nodes["node1"].domains.clear()                       # off where it ran: still refused
    said_no(fake, ["domain", "set", "web1", "--memory", "256"], 3, "node node3 did not answer")


def test_a_domain_present_twice_or_not_running_is_refused(fake):
    from fake_live import running
    setup(fake)
    running(fake, "node2", "web1", WEB1)
    said_no(fake, ["domain", "set", "web1", "--memory", "256"], 3,
            "web1 is present on 2 nodes: node1, node2")
    del fake.nodes["node2"].domains["web1"]
    fake.nodes["node1"].domains["web1"].state = "paused"
    said_no(fake, ["domain", "attach-disk", "web1", "--disk", "size=1"], 3,
            "refused: web1 is paused on node1: a change in place needs it running there, or off on every "
            "node (then conf/ alone changes)")


def test_an_unreadable_running_definition_is_refused(fake):
    setup(fake)
    fake.nodes["node1"].xml["web1"] = ""
    said_no(fake, ["domain", "set", "web1", "--memory", "256"], 3,
            "the running definition of web1 on node1 could not be read: nothing changed")
