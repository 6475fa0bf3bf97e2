"""image list: every image in the pools, as qemu-img on a node that sees
them says now, with the conf/ domains that use it."""

from __future__ import annotations

from havirt.errors import UsageError
from havirt.rules.ownership import uses
from havirt.scan.cluster import Finding
from havirt.scan.images import Images

IMAGE_COLUMNS = [("pool", "pool"), ("name", "image"), ("format", "format"),
                 ("virtual_gib", "size GiB"), ("backing", "backing file"),
                 ("domains", "used by"), ("backing_of", "base of"), ("orphan", "orphan")]


def image_rows(cfg, images: Images, specs) -> list[dict]:
    """One row per image in a pool (pure); see the README for the keys."""
    users: dict[str, set[str]] = {}
    readers: dict[str, set[str]] = {}
    chains = images.chains()
    for name, spec in specs.items():
        for u in uses(spec, chains):
            users.setdefault(u.path, set()).add(name)
            for below in u.backing:
                readers.setdefault(below, set()).add(name)
    rows = []
    for pool, folder in sorted(cfg.pools.items()):
        for fact in images.in_folder(folder):
            domains, base_of = sorted(users.get(fact.path, ())), sorted(readers.get(fact.path, ()))
            rows.append({
                "pool": pool, "path": fact.path, "name": fact.path[len(folder) + 1:],
                "format": fact.format, "virtual_size": fact.virtual_size,
                "virtual_gib": round(fact.virtual_size / 1024 ** 3, 2)
                if fact.virtual_size is not None else None,
                "actual_size": fact.actual_size,
                "backing": fact.backing[0] if fact.backing else None,
                "domains": domains, "backing_of": base_of,
                "orphan": not domains and not base_of,
                "node": images.read_by.get(fact.path), "error": fact.error})
    return rows


def image_list(app) -> tuple[list[dict], list[Finding]]:
    """Rows of `image list`, and what the scan found wrong (pools nobody sees too)."""
    if not app.cfg.pools:
        raise UsageError("config.yaml has no pools: nothing to list (see pools: in config.sample.yaml)")
    with app.work(dry_run=True, record=True) as w:      # a read: the scan is recorded
        specs, _ = w.conf.load_all()
        folders = sorted(w.cfg.pools.values())
        cluster, findings = w.scan(paths=folders)
        images = w.images(cluster, folders)
    for pool, folder in sorted(app.cfg.pools.items()):
        if folder in images.unseen:
            findings.append(Finding("error", "pool-unseen", pool,
                                    f"no node that answered sees the pool {pool} ({folder})",
                                    "mount it on the nodes, or fix pools: in config.yaml"))
    return image_rows(app.cfg, images, specs), findings
