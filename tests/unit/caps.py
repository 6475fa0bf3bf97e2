"""Root without the power to ignore file permissions, for a moment.

The tests run as root, and root writes into a folder of mode 0500 anyway
(CAP_DAC_OVERRIDE). To see what havirt does with a var/ it cannot write or a
conf/ file it cannot read, as a root on root-squashed NFS, an immutable
folder or a non-root user would, the calling thread drops those two
capabilities from its effective set (they stay permitted) and takes them
back afterwards: the kernel itself then says "Permission denied".
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager

CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _get():
    header, data = _Header(_VERSION_3, 0), (_Data * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    return header, data


def _set(header, data) -> None:
    if _libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


@contextmanager
def permissions_apply():
    """Within the block, file permission bits bind this thread, root or not."""
    header, data = _get()
    saved = [(d.effective, d.permitted, d.inheritable) for d in data]
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        data[cap // 32].effective &= ~(1 << (cap % 32))
    _set(header, data)
    try:
        yield
    finally:
        header, data = _get()
        for d, (e, p, i) in zip(data, saved):
            d.effective, d.permitted, d.inheritable = e, p, i
        _set(header, data)
