"""Writing in the home without ever writing through a link.

havirt runs as root in a home that may be shared (NFS): anyone who can write
there could plant a symbolic (or hard) link where havirt writes, to make root
overwrite another file. So every file havirt writes is either opened with
O_NOFOLLOW and checked to be a plain file with one name (the lock, the audit
log), or written as a new file with an unpredictable name in the same folder
and renamed over the old one (var/state.yaml, conf/NAME.xml); and every
folder havirt writes into (the home, var/, conf/, conf/.history/NAME/, the
folder of the metrics file) may be a link only when root or the user running
havirt made it (writable_folder).
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from havirt.errors import HomeError


def reason(e: OSError) -> str:
    """Why an open failed, in words (a link met by O_NOFOLLOW says so)."""
    if e.errno == errno.ELOOP:
        return "it is a symbolic link, and havirt never writes through a link"
    return e.strerror or str(e)


def open_to_write(path: Path, flags: int, what: str) -> int:
    """A file descriptor of `path` for writing: created 0600 if missing,
    never through a link, and only a plain file with one name (a hard link
    to another file is refused as well). Raises HomeError (exit 2)."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as e:
        raise HomeError(f"{path}: cannot open {what}: {reason(e)}") from None
    st = os.fstat(fd)
    problem = ("it is not a plain file" if not stat.S_ISREG(st.st_mode) else
               f"it has {st.st_nlink} names (a hard link)" if st.st_nlink > 1 else "")
    if problem:
        os.close(fd)
        raise HomeError(f"{path}: cannot use {what}: {problem}; remove it")
    os.set_blocking(fd, True)
    return fd


# The most havirt reads of each kind of file: a larger one is refused before
# anything is parsed (YAML takes seconds a MiB; a file can be a sparse terabyte).
MAX_CONFIG = 256 << 10        # config.yaml
MAX_XML = 10 << 20            # domain XML: virsh's own limit
MAX_STATE = 64 << 20          # var/state.yaml: about 200,000 domains as havirt writes it
MAX_LOG = 256 << 20           # var/audit.log, read whole by `havirt log`
MAX_SSH = 16 << 20            # ~/.ssh/config, known_hosts


def read_file(path: Path, limit: int, follow: bool = True) -> bytes:
    """The bytes of `path`, which must be a plain file (through a link is
    fine: reading harms nothing; `follow` False: a link is refused, ELOOP,
    where what is read goes on elsewhere) of at most `limit` bytes. A FIFO or
    a device someone put there would hang havirt or never end: refused with
    an OSError, like a folder or a larger file; FileNotFoundError is raised
    as it is."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a plain file", str(path))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1) if st.st_size <= limit else b""
        if st.st_size > limit or len(data) > limit:     # (it may grow while it is read)
            raise OSError(errno.EFBIG, f"larger than {_size(limit)}, more than havirt reads "
                          "from such a file", str(path))
        return data
    finally:
        os.close(fd)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` atomically: a new file with an unpredictable name in the
    same folder (O_EXCL: never an existing file or link), written, fsynced,
    then renamed over the old one (a link there is replaced, never followed);
    then the folder is fsynced. An OSError is raised as it is, after the
    temporary file is removed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def check_link(path: Path) -> None:
    """`path` (a folder havirt writes into) may be a symbolic link only if
    root or the user running havirt made it: a link someone else planted
    could send havirt's writes anywhere. Raises HomeError (exit 2)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise HomeError(f"{path}: cannot be checked: {reason(e)}") from None
    if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, os.geteuid()):
        raise HomeError(f"{path} is a symbolic link (to {os.readlink(path)}) made by uid "
                        f"{st.st_uid}: havirt follows links in its home only when root or "
                        "its own user made them; replace it with a folder, or make it as root")


def _stat(path: Path) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as e:
        raise HomeError(f"{path}: cannot be checked: {reason(e)}") from None


def writable_folder(folder: Path, top: Path, make: bool = True) -> Path:
    """`folder` as a folder havirt may write into: `top` (the home, or the
    folder itself) and every folder from there down to `folder` is a folder,
    or a symbolic link that root or havirt's own user made (check_link);
    missing ones are created (0750) when `make`. Raises HomeError (exit 2)."""
    parts = folder.relative_to(top).parts
    for path in [top] + [top.joinpath(*parts[:i + 1]) for i in range(len(parts))]:
        check_link(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if not make:
                return folder          # nothing below it exists yet
            try:
                os.mkdir(path, 0o750)
                continue
            except FileExistsError:    # another havirt made it meanwhile: checked like any
                check_link(path)
                st = _stat(path)
            except OSError as e:
                raise HomeError(f"{path}: cannot create the folder: {reason(e)}") from None
        except OSError as e:
            raise HomeError(f"{path}: cannot be checked: {reason(e)}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise HomeError(f"{path} is not a folder, and havirt writes into it: "
                            "move it away")
    return folder
