"""The commands that change a domain in place: on the running domain (virsh
--live) or, while it is off everywhere, on its image (qemu-img).

Built here as remote/commands.py builds the rest (argv through virsh_op,
scripts from quoted parts); a Command becomes text in Command.text() only.
libvirt returns from setmem and from a detach before the guest has followed
(the balloon moves, the guest lets go of the device in its own time): the
wait_* scripts poll the running domain in ONE session, once a second, until
it shows the change or the time is up.
"""

from __future__ import annotations

import re

from havirt.names import quote_argv
from havirt.remote.commands import QEMU_IMG, Command, size_arg, virsh, virsh_op

# Exit codes of the wait_* scripts.
POLL_DONE, POLL_LATE, POLL_UNKNOWN = 0, 1, 2

TARGET_RE = re.compile(r"(?:vd|sd|hd|xvd)[a-z]{1,3}")   # a disk target havirt names in a script
MAC_RE = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def _token(pattern: re.Pattern, text: str) -> str:
    """A disk target or a MAC address, which go into the scripts as they are."""
    if not pattern.fullmatch(text):
        raise ValueError(f"not a {pattern.pattern}: {text!r}")
    return text


# -- the running domain (virsh ... --live) ----------------------------------------------

def set_memory(cfg, name: str, mib: int) -> Command:
    """The balloon's target: the guest gives memory back or takes it, up to its maximum."""
    return virsh_op(cfg, "setmem", name, f"{int(mib)}M", "--live")


def set_vcpus(cfg, name: str, vcpus: int) -> Command:
    """vCPUs plugged in or out, up to the maximum the domain started with."""
    return virsh_op(cfg, "setvcpus", name, str(int(vcpus)), "--live")


def attach_device(cfg, name: str) -> Command:
    """Hot-plug the device whose XML comes on stdin."""
    return virsh_op(cfg, "attach-device", name, "/dev/stdin", "--live")


def detach_disk(cfg, name: str, target: str) -> Command:
    """Ask the guest to let go of the disk `target` (libvirt may return before it does)."""
    return virsh_op(cfg, "detach-disk", name, _token(TARGET_RE, target), "--live")


def detach_interface(cfg, name: str, kind: str, mac: str) -> Command:
    """Ask the guest to let go of the network card with that MAC address."""
    return virsh_op(cfg, "detach-interface", name, kind, "--mac", _token(MAC_RE, mac), "--live")


def block_resize(cfg, name: str, target: str, size_mib: int) -> Command:
    """Grow the disk `target` of a running domain (its image, and what the guest sees)."""
    return virsh_op(cfg, "blockresize", name, _token(TARGET_RE, target), size_arg(size_mib))


# -- waiting for the guest -------------------------------------------------------------------

def _poll(cfg, op: str, args: tuple, probe: tuple, done: str, seconds: float, late: str) -> Command:
    """Run `virsh PROBE` once a second, its output in $s, until the shell test
    `done` holds (exit POLL_DONE) or `seconds` pass (`late` on stderr, exit
    POLL_LATE); a failed virsh is relayed (exit POLL_UNKNOWN: nobody can tell)."""
    script = (f"end=$(( $(date +%s) + {int(seconds)} )); while :; do "
              f"s=$({virsh(cfg, *probe)} 2>&1) || {{ echo \"$s\" >&2; exit {POLL_UNKNOWN}; }}; "
              f"{done} && exit {POLL_DONE}; "
              f"[ \"$(date +%s)\" -ge \"$end\" ] && {{ {quote_argv(['echo', *late.split()])} >&2; "
              f"exit {POLL_LATE}; }}; sleep 1; done")
    return Command(op=op, script=script, args=args)


def wait_balloon(cfg, name: str, mib: int, seconds: float) -> Command:
    """Until the balloon of `name` stands at `mib` MiB (domstats balloon.current, in KiB)."""
    kib = int(mib) * 1024
    return _poll(cfg, "wait-balloon", (name, mib, seconds), ("domstats", "--balloon", name),
                 f"echo \"$s\" | grep -qwF balloon.current={kib}", seconds,
                 f"{name} has not come to {mib} MiB within {int(seconds)} s: "
                 "its guest does not follow the balloon, or not yet")


def wait_detached(cfg, name: str, what: str, token: str, seconds: float) -> Command:
    """Until the disk target (what='disk') or the MAC address (what='interface')
    `token` is gone from the running domain (domblklist / domiflist)."""
    if what == "disk":
        probe, test = ("domblklist", name), f"! echo \"$s\" | grep -qF \" {_token(TARGET_RE, token)} \""
    else:
        probe, test = ("domiflist", name), f"! echo \"$s\" | grep -qiF {_token(MAC_RE, token)}"
    return _poll(cfg, "wait-detached", (name, what, token, seconds), probe, test, seconds,
                 f"{'disk' if what == 'disk' else 'network card'} {token} is still attached to {name} "
                 f"after {int(seconds)} s: "
                 "libvirt asked the guest, which has not let go of it")


# -- an image, while its domain is off everywhere (qemu-img, on a node that sees it) ------

def resize_image(path: str, fmt: str, size_mib: int) -> Command:
    """Grow the image at `path` (never shrink: no --shrink)."""
    return Command(op="img-resize", argv=(QEMU_IMG, "resize", "-q", "-f", fmt, path, size_arg(size_mib)))
