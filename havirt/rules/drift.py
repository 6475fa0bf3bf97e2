"""The running definition against conf/: what differs (pure).

Three commands say it, from three sources of the running definition:

* `cluster validate` and `domain info` read the live XML in their scan
  session and compare all of it;
* `domain list` opens no session: it compares conf/ with what the state
  recorded. Memory and vCPUs come from every scan (`domstats`, which the
  scan reads anyway); disks and interfaces come from the last scan that read
  the domain's live XML (the check after `domain start` or `migrate
  --offline`, `domain info`). Where none did since the domain started, they
  are unknown and not compared.
"""

from __future__ import annotations

from typing import NamedTuple

from havirt.errors import HavirtError
from havirt.parse.domxml import DomainSpec, parse_domain_xml


class Drift(NamedTuple):
    aspect: str      # memory, vcpus, disks, interfaces
    message: str


def definition_drift(conf: DomainSpec, live: DomainSpec) -> list[Drift]:
    """How the running definition `live` differs from conf/ (empty: it does not)."""
    diffs = []
    if conf.memory_mib != live.memory_mib:
        diffs.append(Drift("memory", f"memory {live.memory_mib} MiB running, "
                                     f"{conf.memory_mib} MiB in conf/"))
    if conf.vcpus != live.vcpus:
        diffs.append(Drift("vcpus", f"vCPUs {live.vcpus} running, {conf.vcpus} in conf/"))
    if sorted(conf.disks) != sorted(live.disks):
        diffs.append(Drift("disks", f"disks {sorted(live.disks)} running, "
                                    f"{sorted(conf.disks)} in conf/"))
    # a MAC counts only where conf/ fixes one (libvirt makes one up otherwise)
    fixed_macs = all(i.rsplit(":", 1)[-1] for i in conf.interfaces) if conf.interfaces else True

    def key(i):
        return i if fixed_macs else i.split(":")[0] + ":" + i.split(":")[1]
    if sorted(map(key, conf.interfaces)) != sorted(map(key, live.interfaces)):
        diffs.append(Drift("interfaces", f"interfaces {sorted(live.interfaces)} running, "
                                         f"{sorted(conf.interfaces)} in conf/"))
    return diffs


def recorded_drift(rec, spec: DomainSpec | None) -> list[Drift]:
    """The drift of a running domain as the state recorded it (see the module
    docstring); empty for a domain that does not run or has no usable conf/."""
    if rec is None or not rec.active or spec is None:
        return []
    live = DomainSpec(name=rec.name,
                      memory_mib=rec.memory_mib or spec.memory_mib,
                      vcpus=rec.vcpus or spec.vcpus,
                      disks=spec.disks if rec.disks is None else rec.disks,
                      interfaces=spec.interfaces if rec.interfaces is None else rec.interfaces)
    return definition_drift(spec, live)


def live_spec(cluster, node: str, name: str) -> DomainSpec | None:
    """The running definition of `name` on `node` if the scan read it, else None."""
    xml = cluster.nodes[node].xml.get(name, "") if node in cluster.nodes else ""
    if not xml.strip():
        return None
    try:
        live = parse_domain_xml(xml, f"{name} on {node}")
    except HavirtError:
        return None
    return live if live.name == name else None


def note_running_definitions(state, cluster) -> None:
    """Record the disks and interfaces of every running definition this scan
    read (on the node that runs the guest); forget them for a domain that no
    longer runs (its next start may use another definition)."""
    for name, (node, _) in cluster.placements().items():
        live = live_spec(cluster, node, name)
        rec = state.domains.get(name)
        if live is not None and rec is not None:
            rec.disks, rec.interfaces = list(live.disks), list(live.interfaces)
    for rec in state.domains.values():
        if not rec.active:
            rec.disks = rec.interfaces = None
