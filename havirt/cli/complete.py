"""Shell completion of node and domain names (click's own mechanism).

Names come from the home's files only, the state file and conf/: completing
never opens an SSH session, never takes the lock, never prints an error.

Every argument or option named NAME/NAMES, NODE/NODES, TARGET, SOURCE, TO or
DOMAIN/DOMAINS of a havirt command completes by itself (HavirtCommand sets it
up, see `attach`): NAME and NAMES are nodes under `havirt node` and domains
elsewhere. A parameter with another name takes one argument:
``@click.argument("vm", shell_complete=complete_domains)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.shell_completion import CompletionItem

NODE_PARAMS = frozenset({"node", "nodes", "target", "source", "to"})
DOMAIN_PARAMS = frozenset({"domain", "domains"})
NAME_PARAMS = frozenset({"name", "names"})      # the module says which


def script_dir() -> Path | None:
    """The folder of the program that runs (havirt.py's folder is a home)."""
    return Path(sys.argv[0]).resolve().parent if sys.argv and sys.argv[0] else None


def _module(ctx: click.Context) -> str | None:
    """'node' for `havirt node ...`, 'domain' for `havirt domain ...`."""
    while ctx.parent is not None and ctx.parent.parent is not None:
        ctx = ctx.parent
    return ctx.info_name if ctx.parent is not None else None


def known_names(ctx: click.Context, kind: str) -> list[str]:
    """Nodes of the state, or domains of conf/ and of the state, from the
    home's store (its files, or etcd). A TAB never prints an error: what
    cannot be read offers nothing."""
    from havirt.store.config import load_config
    from havirt.store.home import resolve_home
    from havirt.store.stores import open_store
    try:
        home = resolve_home(ctx.find_root().params.get("home"), script_dir())
        store = open_store(home, load_config(home.root / "config.yaml"))
    except Exception:
        return []
    if store.shared:           # etcd: a TAB waits half a second per member at most
        store.etcd.connect_timeout = store.etcd.answer_timeout = 0.5
    names: set[str] = set()
    try:
        state = store.load_state()
        names |= set(state.nodes if kind == "node" else state.domains)
    except Exception:
        pass
    if kind == "domain":
        try:
            names |= store.conf.names()
        except Exception:
            pass
    store.close()
    return sorted(names)


def _items(ctx, param, kind: str, incomplete: str) -> list[CompletionItem]:
    many = param.multiple or param.nargs == -1
    given = set(ctx.params.get(param.name) or ()) if many else set()   # offer the others
    return [CompletionItem(n) for n in known_names(ctx, kind)
            if n.startswith(incomplete) and n not in given]


def complete_nodes(ctx, param, incomplete):
    """shell_complete= of a parameter that takes node names."""
    return _items(ctx, param, "node", incomplete)


def complete_domains(ctx, param, incomplete):
    """shell_complete= of a parameter that takes domain names."""
    return _items(ctx, param, "domain", incomplete)


class Names(click.types.StringParamType):
    """Text, completed with node or domain names (chosen by the parameter's name)."""

    def shell_complete(self, ctx, param, incomplete):
        if param.name in NODE_PARAMS:
            kind = "node"
        elif param.name in DOMAIN_PARAMS:
            kind = "domain"
        else:
            kind = "node" if _module(ctx) == "node" else "domain"
        return _items(ctx, param, kind, incomplete)


NAMES = Names()


def attach(params) -> None:
    """Give every plain-text parameter named like a node or a domain the
    completion of those names (one with its own shell_complete keeps it)."""
    for p in params:
        if (p.name in NODE_PARAMS | DOMAIN_PARAMS | NAME_PARAMS and type(p.type) is
                click.types.StringParamType and getattr(p, "_custom_shell_complete", None) is None):
            p.type = NAMES
