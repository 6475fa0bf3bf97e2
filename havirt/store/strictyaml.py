"""Reading the files people edit by hand (config.yaml, var/state.yaml):
UTF-8 text, no YAML anchors or aliases, no key given twice, bounded work.

An alias-built file of a few hundred bytes can stand for billions of
values; a key given twice silently keeps the last one. Both are refused,
with the line, before any value is used.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml's C parser where present


class Refused(Exception):
    """The file is readable YAML, but not acceptable: says why and where."""

    def __init__(self, problem: str, line: int | None = None):
        self.problem = problem
        self.line = line
        super().__init__(f"line {line}: {problem}" if line else problem)


class _Loader(_Base):
    """Safe loading; a key given twice in one mapping is refused."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:   # an unhashable key: the constructor says so below
                continue
            if duplicate:
                raise Refused(f"the key {str(key)[:40]!r} is given twice in one mapping",
                              key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        """A YAML integer, but never one of thousands of digits (int() of those
        is slow, and refused by Python beyond 4300)."""
        if len(node.value) > MAX_NUMBER:
            raise Refused(f"a number of {len(node.value)} characters: more than any value "
                          "havirt takes", node.start_mark.line + 1)
        return super().construct_yaml_int(node)


MAX_NUMBER = 100       # characters of a YAML integer (digits, '_', a sign, 0x...)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


# YAML 1.1 reads `1e-6` (no dot) as text; here it is the number it looks like.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


MAX_DEPTH = 64     # far more than any file of havirt's needs (the state has 3 levels)


def _check_events(text: str) -> None:
    """One pass over the events (linear in the text, no recursion): no anchor,
    no alias, no nesting deeper than MAX_DEPTH (libyaml's composer recurses
    in C, and a deep enough file would crash the process)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Base):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise Refused("YAML anchors and aliases (&name, *name) are not accepted here; "
                          "write the values out", event.start_mark.line + 1)
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise Refused(f"nested too deeply (more than {MAX_DEPTH} levels)",
                              event.start_mark.line + 1)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def load(text: str):
    """The document in `text`. Raises Refused (aliases, a key twice, nesting
    too deep) or yaml.YAMLError (not YAML)."""
    _check_events(text)
    return yaml.load(text, Loader=_Loader)


def error_line(e: yaml.YAMLError) -> int | None:
    """The line (from 1) a YAML error points at, when it points at one."""
    mark = getattr(e, "problem_mark", None)
    return mark.line + 1 if mark else None


def read_text(path: Path, error, limit: int) -> str | None:
    """The file (at most `limit` bytes) as UTF-8 text; None when it does not
    exist. Any other problem raises `error` (an exception class) with one
    line naming the file."""
    from havirt.store.files import read_file
    try:
        raw = read_file(path, limit)
    except FileNotFoundError:
        if os.path.islink(path):      # a broken link is a mistake, never "no file"
            raise error(f"{path} is a symbolic link to {os.readlink(path)}, which does not "
                        "exist: fix the link or remove it") from None
        return None
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise error(f"{path}: line {line}: not UTF-8 text (byte {raw[e.start]:#04x}); "
                    "left untouched") from None
