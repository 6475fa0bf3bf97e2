"""The folders of havirt/ are layers: each imports only folders below it, and
no module imports itself back through others (no circle).

    cli -> ops -> plan -> rules -> scan -> remote -> store -> parse -> names -> errors

Every import counts, those inside functions too (they keep read-only commands
light, they do not make an upward import right)."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "havirt"

LAYERS = ["cli", "ops", "plan", "rules", "scan", "remote", "store", "parse", "names", "errors"]
TOP = ["__main__"]          # python -m havirt: may import anything


def module_name(path: Path, pkg: Path = PKG) -> str:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str], pkg: Path = PKG) -> set[str]:
    """The havirt modules `path` imports (a `from X import y` of a module y counts as X.y)."""
    me = module_name(path, pkg)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "havirt"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "havirt":
                continue
            subs = {f"{mod}.{a.name}" for a in node.names} & modules
            out |= subs or {mod}
            if subs and len(subs) < len(node.names):
                out.add(mod)
    return out - {me}


def graph(pkg: Path = PKG) -> dict[str, set[str]]:
    paths = {module_name(p, pkg): p for p in pkg.rglob("*.py")}
    return {m: imports(p, set(paths), pkg) for m, p in paths.items()}


def layer(module: str) -> str:
    """havirt.plan.balance.model -> plan; havirt.errors -> errors; havirt -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in sorted(g.items()):
        me = layer(mod)
        if me in TOP:
            continue
        for dep in sorted(deps):
            them = layer(dep)
            if them == me or them == "":     # havirt/__init__: the version, for anyone
                continue
            if me not in LAYERS or them not in LAYERS \
                    or LAYERS.index(them) < LAYERS.index(me):
                bad.append(f"{mod} imports {dep} ({me or 'havirt'} -> {them})")
    return bad


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_folder_is_a_known_layer():
    folders = sorted(p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert set(folders) <= set(LAYERS), folders
    files = sorted(p.stem for p in PKG.glob("*.py"))
    assert files == ["__init__", "__main__", "errors", "names"], files
    assert len(folders) + len(files) <= 12


def test_no_upward_import():
    assert upward(graph()) == []


def test_no_import_circle():
    assert circles(graph()) == []


def test_the_checks_can_fail(tmp_path):
    """An upward import and a circle, planted in a copy of the package, are found."""
    import shutil
    copy = tmp_path / "havirt"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "parse" / "virsh.py").write_text(
        (copy / "parse" / "virsh.py").read_text() + "\nfrom havirt.rules.fit import load_of\n")
    (copy / "ops" / "status.py").write_text(
        (copy / "ops" / "status.py").read_text() + "\nfrom havirt.ops import info\n")
    (copy / "ops" / "info.py").write_text(
        (copy / "ops" / "info.py").read_text() + "\nfrom havirt.ops import status\n")
    g = graph(copy)
    assert "havirt.parse.virsh imports havirt.rules.fit (parse -> rules)" in upward(g)
    assert ["havirt.ops.info", "havirt.ops.status"] in circles(g)
