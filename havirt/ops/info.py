"""domain info: one domain as the nodes see it now, beside conf/.

One fresh scan of every node (one session each, in parallel, recorded in
the state): where the domain runs, its state, memory and vCPUs, whether
each node sees its disk paths, and in the same session the running
definition (its live XML: devices, display, console, drift from conf/).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from havirt.errors import HavirtError, UsageError
from havirt.names import check_name
from havirt.parse.domxml import disk_path, disk_spec, interface_fields
from havirt.parse.numbers import PORT, whole_in
from havirt.parse.virsh import SHUT_OFF
from havirt.rules.disks import visibility
from havirt.rules.drift import definition_drift, live_spec, recorded_drift
from havirt.rules.ownership import bases


def domain_info(app, name: str) -> tuple[dict, list]:
    """(the document, the anomalies the scan found) for `name`."""
    check_name("domain", name)
    defined = app.conf.exists(name)
    spec, xml_error = None, None
    if defined:
        try:
            spec = app.conf.load(name)
        except HavirtError as e:
            xml_error = str(e)
    with app.work(dry_run=True, record=True) as w:    # a read: the scan is recorded
        rec = w.state.domains.get(name)
        paths = set(spec.disks if spec else ()) | set(rec.disks or () if rec else ())
        cluster, findings = w.scan(paths=sorted(paths), dump_running=[name])
        rec = w.state.domains.get(name)
    if spec is None and xml_error is None and rec is None and not cluster.copies(name):
        raise UsageError(f"unknown domain {name!r}: no {app.conf.where(name)}, and no node that "
                         "answered runs it")
    specs, _ = app.conf.load_all()
    return describe(name, cluster, rec, spec, xml_error, app.conf.shown(name) if defined else None,
                    bases(specs).get(name, [])), findings


def describe(name, cluster, rec, spec, xml_error, conf_file, base_of=()) -> dict:
    """The document of `domain info` (pure): see the README for its keys."""
    copies = cluster.copies(name)
    node, fact = cluster.placements().get(name, (None, None))
    down = [f.name for f in cluster.unreachable()]
    live = live_spec(cluster, node, name) if node else None
    if fact is not None:
        state = fact.state
    else:
        state = "unknown" if down else SHUT_OFF
    if live is not None:
        text, definition = cluster.nodes[node].xml[name], "running"
    elif spec is not None:
        text, definition = spec.raw.decode("utf-8"), "conf"
    else:
        text, definition = None, None
    devices = _devices(text) if text else {"disks": [], "interfaces": [], "graphics": [],
                                           "consoles": []}
    for disk in devices["disks"]:
        vis = visibility(cluster, disk["path"]) if disk["path"] else None
        disk["missing_on"] = list(vis.missing) if vis else []
        disk["everywhere"] = vis.everywhere if vis else None
    if live is not None and spec is not None:
        drift = definition_drift(spec, live)
    else:
        drift = recorded_drift(rec, spec)
    container = fact.container if fact is not None else bool(spec is not None and spec.container)
    return {
        "name": name,
        "kind": "container" if container else "vm",
        "state": state,
        "node": node,
        "nodes": [n for n, _ in copies],
        "unreachable": down,
        "conf_file": conf_file,
        "xml_error": xml_error,
        "memory_mib": {"running": fact.memory_mib if fact else None,
                       "conf": spec.memory_mib if spec else None},
        "vcpus": {"running": fact.vcpus if fact else None, "conf": spec.vcpus if spec else None},
        "definition": definition,
        **devices,
        "maintenance": bool(rec and rec.maintenance),
        "base_of": list(base_of),
        "last_seen": rec.last_seen if rec else None,
        "drift": [d.message for d in drift],
    }


def _devices(text: str) -> dict:
    """Disks, interfaces, displays and consoles of a domain's XML (pure)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return {"disks": [], "interfaces": [], "graphics": [], "consoles": []}
    disks = []
    for d in root.findall("devices/disk"):
        target = d.find("target")
        path = disk_path(d)
        disks.append({"target": target.get("dev") if target is not None else None,
                      "device": d.get("device", "disk"), "type": d.get("type"), "path": path,
                      "backing": list(disk_spec(d, path).backing) if path else []})
    interfaces = []
    for i in root.findall("devices/interface"):
        kind, source, mac = interface_fields(i)
        model = i.find("model")
        interfaces.append({"type": kind, "source": source or None, "mac": mac or None,
                           "model": model.get("type") if model is not None else None})
    graphics = []
    for g in root.findall("devices/graphics"):
        listen = g.get("listen")
        if listen is None and g.find("listen") is not None:
            listen = g.find("listen").get("address")
        port = whole_in(g.get("port") or "", PORT)     # -1: not chosen yet (autoport)
        graphics.append({"type": g.get("type"), "port": port,
                         "listen": listen, "autoport": g.get("autoport") == "yes"})
    consoles = []
    for c in root.findall("devices/console") or root.findall("devices/serial"):
        source, target = c.find("source"), c.find("target")
        consoles.append({"type": c.get("type"),
                         "target": target.get("type") if target is not None else None,
                         "path": c.get("tty") or (source.get("path") if source is not None else None)})
    return {"disks": disks, "interfaces": interfaces, "graphics": graphics, "consoles": consoles}


def _either(running, conf, unit="") -> str:
    parts = []
    if running is not None:
        parts.append(f"{running}{unit} running")
    if conf is not None:
        parts.append(f"{conf}{unit} in conf/")
    return ", ".join(parts) or "-"


def info_rows(doc: dict) -> list[dict]:
    """The document as (field, value) rows, for the screen and tsv formats."""
    rows = [("domain", doc["name"])]
    if doc["kind"] == "container":
        rows.append(("kind", "container (libvirt's LXC driver)"))
    state = doc["state"]
    if len(doc["nodes"]) > 1:
        state += f" on {', '.join(doc['nodes'])} (MORE THAN ONE NODE)"
    elif doc["node"]:
        state += f" on {doc['node']}"
    if doc["unreachable"]:
        state += f" (not checked: {', '.join(doc['unreachable'])} did not answer)"
    rows.append(("state", state))
    rows.append(("memory", _either(doc["memory_mib"]["running"], doc["memory_mib"]["conf"], " MiB")))
    rows.append(("vcpus", _either(doc["vcpus"]["running"], doc["vcpus"]["conf"])))
    src = {"running": " (running definition)", "conf": " (conf/)"}.get(doc["definition"], "")
    for d in doc["disks"]:
        seen = ("seen by every node" if d["everywhere"] else
                f"missing on {', '.join(d['missing_on'])}" if d["everywhere"] is False else
                "not checked")
        backing = f"; backing file {d['backing'][0]}" if d["backing"] else ""
        rows.append((f"disk {d['target'] or '?'}",
                     f"{d['path'] or '(no source)'} ({d['device']}; {seen}{backing}){src}"))
    for i in doc["interfaces"]:
        rows.append(("interface", " ".join(x for x in (i["type"], i["source"], i["mac"],
                                                         i["model"]) if x) + src))
    for g in doc["graphics"]:
        where = f"{g['listen'] or '*'}:{g['port']}" if g["port"] else \
            ("port chosen at start" if g["autoport"] else "no port")
        rows.append(("display", f"{g['type']} {where}{src}"))
    for c in doc["consoles"]:
        rows.append(("console", " ".join(x for x in (c["type"], c["target"], c["path"]) if x)
                     + (f" (havirt domain console {doc['name']})" if doc["node"] else "")))
    if doc["base_of"]:
        rows.append(("base of", f"{', '.join(doc['base_of'])} (linked clones: {doc['name']} may "
                     "neither start nor lose its disks while they exist)"))
    rows.append(("maintenance", "yes" if doc["maintenance"] else "no"))
    rows.append(("last seen", doc["last_seen"] or "-"))
    rows.append(("conf/", doc["conf_file"] or "none" if not doc["xml_error"]
                 else f"unusable: {doc['xml_error']}"))
    for d in doc["drift"]:
        rows.append(("drift", d))
    return [{"field": k, "value": v} for k, v in rows]
