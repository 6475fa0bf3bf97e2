"""Commands of snapshots and backups: built here, quoted once (Command.text()).

Snapshots are qcow2 internal snapshots, kept in the image files:
* of a running domain, by libvirt (`virsh snapshot-create-as --atomic
  --no-metadata`: qemu's savevm, every writable disk at once, with the
  guest's memory) on the node where it runs; deleted there through qemu's
  monitor (`delvm`), libvirt having no record of it;
* of a domain that is off everywhere, by `qemu-img snapshot` on a node that
  sees the image, one image per command.
A backup of a running domain is libvirt's push-mode backup job
(`virsh backup-begin`), waited for in the same session.
"""

from __future__ import annotations

from havirt.names import check_snapshot_name, quote_argv
from havirt.remote.commands import QEMU_IMG, Command, absent, virsh, virsh_op

IMG_ACTIONS = {"create": "-c", "revert": "-a", "delete": "-d"}

# Exit code of backup_live() when the job did not end within its time (it was aborted).
BACKUP_TIMED_OUT = 3


def snapshot_live(cfg, domain: str, snapshot: str) -> Command:
    """An internal snapshot of every writable disk of the running `domain`, with
    its memory, atomically; libvirt keeps no record of it (a record would go
    with the transient domain, and libvirt refuses to migrate a domain that has one)."""
    return virsh_op(cfg, "snapshot-create-as", "--domain", domain, "--name",
                    check_snapshot_name(snapshot), "--atomic", "--no-metadata")


def delete_live(cfg, domain: str, snapshot: str) -> Command:
    """Delete `snapshot` from every disk of the running `domain` through qemu's
    monitor (`delvm`). It says nothing when it worked, and nothing either for a
    snapshot it did not find: whatever it prints is a failure, and the images
    are read again afterwards."""
    hmp = virsh(cfg, "qemu-monitor-command", "--domain", domain, "--hmp",
                f"delvm {check_snapshot_name(snapshot)}")
    script = (f"out=$({hmp}) || exit 1; "
              "if [ -n \"$(printf '%s' \"$out\" | tr -d '[:space:]')\" ]; then "
              "printf '%s\\n' \"$out\" >&2; exit 1; fi")
    return Command(op="snap-delete-live", script=script, args=(domain, snapshot))


def image_snapshot(action: str, path: str, snapshot: str) -> Command:
    """`qemu-img snapshot -c|-a|-d SNAPSHOT PATH` (create, revert, delete) on an
    image no process uses (it takes qemu's write lock)."""
    argv = (QEMU_IMG, "snapshot", IMG_ACTIONS[action], check_snapshot_name(snapshot), path)
    return Command(op="img-snapshot", argv=argv, args=(action, path, snapshot))


def backup_live(cfg, domain: str, xml: str, targets, seconds: float) -> Command:
    """Back up the running `domain` with libvirt's push-mode backup job (`xml`:
    the <domainbackup> naming `targets`, new files) and wait for it, in one
    session: `domjobinfo` once a second until no job runs, then the completed
    job must say Completed. At the deadline the job is aborted (exit
    BACKUP_TIMED_OUT). The files of a job that fails or is aborted are removed
    (the job made them: none was there before it began)."""
    targets = tuple(targets)
    exists = "; ".join(absent(t) for t in targets)
    info = virsh(cfg, "domjobinfo", "--domain", domain)
    script = "\n".join([
        exists,
        f"printf '%s\\n' {quote_argv([xml])} | {virsh(cfg, 'backup-begin', '--domain', domain, '/dev/stdin')}"
        " || exit 1",
        # from here on the files are the job's: a job that fails or is aborted leaves none
        f"fail() {{ printf '%s\\n' \"$1\" >&2; rm -f {quote_argv(targets)}; exit \"$2\"; }}",
        f"end=$(( $(date +%s) + {int(seconds)} ))",
        f"while s=$({info} 2>&1); do",
        "  printf '%s\\n' \"$s\" | grep -q '^Job type: *None' && break",
        f"  if [ \"$(date +%s)\" -ge \"$end\" ]; then {virsh(cfg, 'domjobabort', '--domain', domain)}; "
        f"fail 'the backup did not end within {int(seconds)} s: aborted' {BACKUP_TIMED_OUT}; fi",
        "  sleep 1",
        "done",
        f"s=$({info} --completed 2>&1)",
        "printf '%s\\n' \"$s\" | grep -q '^Job type: *Completed' || fail \"$(printf '%s' \"$s\" | tr '\\n' ' ')\" 1",
    ]) + "\n"
    return Command(op="backup-live", script=script, args=(domain, xml, targets, seconds))


def write_new_file(path: str, text: str) -> Command:
    """Write `text` to the new file `path` on the node (never over a file: the
    shell's noclobber refuses one made meanwhile too)."""
    script = f"{absent(path)}; ( set -C; printf '%s' {quote_argv([text])} > {quote_argv([path])} ) || exit 1"
    return Command(op="write-file", script=script, args=(path, text))

