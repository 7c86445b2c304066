#!/usr/bin/env python3
"""Fail when the package's modules import each other in a cycle at run time (``make lint``).

Every ``import`` and ``from ... import`` of the package's own modules is an edge, wherever it stands (a
function's body too: a lazy import still runs, and is the usual way a cycle hides); only imports under
``if TYPE_CHECKING:`` are left out, since they never run. Importing ``a.b.c`` runs ``a/__init__.py`` and
``a/b/__init__.py`` first, so a module also depends on each package above what it imports. A cycle is a
strongly connected component of more than one module (or a module importing itself).

    python scripts/check_imports.py [PACKAGE_DIR]        # default: proxy
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node.test):
            stack.extend(node.orelse)  # the else branch runs
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def graph(root: Path) -> dict[str, set[str]]:
    """Module name → the package's modules it imports at run time (packages above them included)."""
    files = {module_name(root, p): p for p in root.rglob("*.py")}
    pkg = root.name
    edges: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(module, is_package, node)
                # ``from pkg import name``: a submodule when one exists by that name, else pkg itself.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for target in targets:
                if target != pkg and not target.startswith(pkg + "."):
                    continue
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    name = ".".join(parts[:i])
                    # the packages a module sits in are initialised before it: not its own dependencies
                    if name in files and name != module and not module.startswith(name + "."):
                        edges[module].add(name)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, ()):
                    out.append(sorted(component))
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "proxy").resolve()
    found = cycles(graph(root))
    edges = graph(root)
    for component in found:
        print(f"import cycle among {len(component)} modules:", file=sys.stderr)
        members = set(component)
        for m in component:
            inside = sorted(edges[m] & members)
            print(f"  {m} -> {', '.join(inside)}", file=sys.stderr)
    if found:
        print("break each cycle: move what both sides need into a module both import, or import for types only "
              "(under TYPE_CHECKING)", file=sys.stderr)
        return 1
    print(f"no import cycles among the {len(edges)} modules of {root.name}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
