"""Validation of names, the one function that quotes remote arguments, and
the one that quotes an XML attribute's value."""

import re
import shlex

from havirt.errors import UsageError

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")


def valid_name(name) -> bool:
    """The name rule: letters, digits, '.', '_', '-'; 1 to 64 characters; not
    starting with '.' or '-' (so never '..' nor an option).

    It applies to the names an admin gives havirt (nodes, conf/ files, command
    arguments). Domains havirt merely observes on nodes may have any name
    libvirt accepts (spaces, '+', any letters, any length): those are recorded,
    counted and reported, never refused.
    """
    return isinstance(name, str) and bool(NAME_RE.fullmatch(name)) and ".." not in name


def check_name(kind: str, name: str) -> str:
    """Return `name` if it follows the name rule (valid_name), else raise UsageError."""
    if not valid_name(name):
        shown = name if isinstance(name, str) and len(name) <= 40 else repr(name)[:40] + "..."
        raise UsageError(
            f"invalid {kind} name {shown!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "not starting with '.' or '-'"
        )
    return name


SNAPSHOT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")


def check_snapshot_name(name: str) -> str:
    """A snapshot name: 1 to 64 letters, digits, '.', '_', '-', starting with a
    letter. qemu finds a snapshot by its name or by its numeric ID, so a name
    of digits could pick another snapshot; the first letter rules that out,
    and an option ('-x') too."""
    if not isinstance(name, str) or not SNAPSHOT_RE.fullmatch(name) or ".." in name:
        shown = name if isinstance(name, str) and len(name) <= 40 else repr(name)[:40] + "..."
        raise UsageError(f"invalid snapshot name {shown!r}: use 1-64 letters, digits, '.', '_' "
                         "or '-', starting with a letter")
    return name


def quote_argv(argv) -> str:
    """Quote an argv list once, for a remote POSIX shell."""
    return " ".join(shlex.quote(str(a)) for a in argv)


_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def xml_attr(text: str) -> str:
    """`text` as an XML attribute's value, in double quotes (what
    xml.sax.saxutils.quoteattr gives, without importing urllib and http for
    it: every command that plans a definition would)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return '"' + text.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;") + '"'


def printable(text) -> str:
    """Text for a terminal: every character that is not printable (control
    characters, escape sequences, line breaks) shown escaped, so that text
    from a node or a file can never break a line or drive the terminal."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _ESCAPES.get(c) or
                   (f"\\x{ord(c):02x}" if ord(c) < 0x100 else
                    f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
                   for c in text)


USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}")


def check_user(user: str) -> str:
    """An SSH user name: it ends up in a shell line and in a qemu+ssh:// URI."""
    if not isinstance(user, str) or not USER_RE.fullmatch(user):
        raise UsageError(f"invalid user name {str(user)[:40]!r}: use letters, digits, '.', '_', '-'")
    return user


HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")


def check_address(address: str) -> str:
    """A host name, IPv4 or IPv6 address (`::1` too; no zone index): nothing
    else reaches ssh or a URI."""
    if isinstance(address, str) and (HOST_RE.fullmatch(address) or _ipv6(address)):
        return address
    raise UsageError(f"invalid address {str(address)[:40]!r}: use a host name or an IP address")


def _ipv6(text: str) -> bool:
    import ipaddress
    try:
        return ":" in text and "%" not in text and bool(ipaddress.IPv6Address(text))
    except ValueError:
        return False
