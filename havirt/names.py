"""Validation of names and the one function that quotes remote arguments."""

import re
import shlex

from .errors import UsageError

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")


def check_name(kind: str, name: str) -> str:
    """Return `name` if it is a valid node or domain name, else raise UsageError.

    Allowed: letters, digits, '.', '_', '-'; 1 to 64 characters; not starting
    with '.' or '-' (so never '..' nor an option).
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        shown = name if isinstance(name, str) and len(name) <= 40 else repr(name)[:40] + "..."
        raise UsageError(
            f"invalid {kind} name {shown!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "not starting with '.' or '-'"
        )
    return name


def quote_argv(argv) -> str:
    """Quote an argv list once, for a remote POSIX shell."""
    return " ".join(shlex.quote(str(a)) for a in argv)


USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}")


def check_user(user: str) -> str:
    """An SSH user name: it ends up in a shell line and in a qemu+ssh:// URI."""
    if not isinstance(user, str) or not USER_RE.fullmatch(user):
        raise UsageError(f"invalid user name {str(user)[:40]!r}: use letters, digits, '.', '_', '-'")
    return user


ADDRESS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}")


def check_address(address: str) -> str:
    """A host name, IPv4 or IPv6 address: nothing else reaches ssh or a URI."""
    if not isinstance(address, str) or not ADDRESS_RE.fullmatch(address):
        raise UsageError(f"invalid address {address[:40]!r}: use a host name or an IP address")
    return address
