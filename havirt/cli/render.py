"""Output in three formats: screen (a table), tsv, json (stable keys)."""

from __future__ import annotations

import json

from havirt.names import printable


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, (list, tuple)):
        return printable(",".join(map(str, v))) or "-"
    return printable(v)


def render(fmt: str, rows: list[dict], columns: list[tuple[str, str]], doc=None) -> str:
    """rows: dicts with stable keys; columns: (key, header) shown on screen/tsv.

    On screen and in tsv every cell is one line of printable text (a tab, a
    line break or an escape sequence in a name is shown escaped); json keeps
    the text exact (escaped as JSON does).

    json prints `doc` when given (a whole document), else the rows as they are.
    """
    if fmt == "json":
        return json.dumps(rows if doc is None else doc, indent=2, sort_keys=False)
    if fmt == "tsv":
        lines = ["\t".join(k for k, _ in columns)]
        lines += ["\t".join(_cell(r.get(k)) for k, _ in columns) for r in rows]   # tabs escaped
        return "\n".join(lines)
    from tabulate import tabulate
    if not rows:
        return "(none)"
    return tabulate([[_cell(r.get(k)) for k, _ in columns] for r in rows],
                    headers=[h for _, h in columns], tablefmt="simple",
                    disable_numparse=True)
