"""The package's imports run one way, down the floors that docs/ARCHITECTURE.md lists, with no
circle; every module stays under 500 lines. Read from the source with ``ast``: imports inside
functions count as much as those at the top of a module."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import synthworth

PACKAGE = Path(synthworth.__file__).parent
TOP = PACKAGE.name
DOC = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"
MAX_LINES = 500


def floors() -> dict[str, int]:
    """Room -> floor, read from the table of docs/ARCHITECTURE.md (so the test and the document
    cannot disagree)."""
    out = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for room in re.findall(r"`([^`]+)`", cells[1]):
                out[room.rstrip("/")] = int(cells[0])
    return out


def modules() -> dict[str, Path]:
    out = {}
    for file in PACKAGE.rglob("*.py"):
        parts = (TOP, *file.relative_to(PACKAGE).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return out


def room(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from pkg import sub`` is the submodule)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, file in mods.items():
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                if base == TOP or base.startswith(TOP + "."):
                    targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name == TOP or a.name.startswith(TOP + ".")]
            for target in targets:
                while target not in mods and "." in target:
                    target = target.rpartition(".")[0]
                if target != name:
                    edges[name].add(target)
    return edges


def circles(nodes, edges) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = []
                while True:
                    top = stack.pop()
                    on.discard(top)
                    part.append(top)
                    if top == node:
                        break
                if len(part) > 1:
                    found.append(sorted(part))
    return found


def test_the_document_names_every_room():
    rooms = {room(m) for m in modules()}
    assert not rooms - set(floors()), f"rooms on no floor of {DOC.name}: {sorted(rooms - set(floors()))}"


def test_no_import_runs_up_a_floor():
    floor = floors()
    upward = [f"{a} -> {b} (floor {floor[room(a)]} imports floor {floor[room(b)]})"
              for a, targets in sorted(imports(modules()).items()) for b in sorted(targets)
              if room(a) in floor and room(b) in floor and floor[room(b)] > floor[room(a)]]
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    mods = modules()
    found = circles(mods, imports(mods))
    assert not found, "\n".join(" <-> ".join(c) for c in found)


def test_the_checks_find_what_they_look_for():
    """The reader itself: a circle, a module-level import and imports inside functions are found
    (the command line imports the study only inside its commands)."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(edges, edges) == [["a", "b", "c"]]
    mods = modules()
    edges = imports(mods)
    assert f"{TOP}.errors" in edges[f"{TOP}.config"]          # a module-level import
    assert any(room(t) == "study" for m, targets in edges.items() if room(m) == "cli" for t in targets)


def test_no_module_over_500_lines():
    long = {str(f.relative_to(PACKAGE)): n for f in PACKAGE.rglob("*.py")
            if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long
