"""The import graph of coreecho/: no circle anywhere, and imports run one way between the layers.

Every ``import`` and ``from ... import`` of every module is read with :mod:`ast`, wherever it is (module level,
inside functions, under ``if TYPE_CHECKING:``), and so is every string that names a coreecho module (the targets of
lazy exports, deprecated aliases and declared operations, which are imported by name at run time). The layers come
from docs/DESIGN "Imports run one way": video, models, losses at the bottom (video below models); engine above them;
weights (hub), inference, analysis and data above that; train, then cli (and the package root's lazy facade) on top.
A module may import its own layer and the layers below, never one above.

Deprecated aliases (a name that moved, served from its new home for one release by ``deprecated_aliases`` or
``moved_names``) are forwarding pointers resolved when the old name is used, after both modules are initialised:
they obey the layer order but are left out of the cycle check, since the new home may well import the old module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "coreecho"

#: (layer, module prefixes), bottom first. A module belongs to the layer of its longest matching prefix; the bare
#: package root "coreecho" matches only itself, so a new top-level module must be placed here explicitly.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("coreecho._version", "coreecho.errors", "coreecho.constants", "coreecho._lazy", "coreecho._warnings",
              "coreecho._atomic", "coreecho._oserrors", "coreecho._lock", "coreecho._deprecation",
              "coreecho.seeding", "coreecho._lists", "coreecho._csvcells")),
    ("video", ("coreecho.video",)),
    ("models", ("coreecho.models", "coreecho.losses")),
    ("engine", ("coreecho.engine", "coreecho.precision", "coreecho.allocator", "coreecho.validate")),
    ("weights/analysis/data", ("coreecho.hub", "coreecho.inference", "coreecho.analysis", "coreecho.data")),
    ("train", ("coreecho.train",)),
    ("cli", ("coreecho.cli", "coreecho.__main__", "coreecho")),
]
_MODULE_STRING = re.compile(r"coreecho(\.\w+)+(:\w+)?")
#: Functions whose string arguments are deprecated aliases (old name -> new home).
ALIAS_HELPERS = ("deprecated_aliases", "moved_names")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _target(name: str, mods: dict[str, Path]) -> str | None:
    """The module ``name`` refers to: itself, or the nearest enclosing package or module that exists."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _edges(module: str, path: Path, mods: dict[str, Path], aliases: bool = False) -> dict[str, int]:
    """Modules that ``module`` imports (by statement or by name in a string), with the line of the first one;
    with ``aliases``, the new homes its deprecated aliases point to instead."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    in_alias = {id(n) for call in ast.walk(tree) if isinstance(call, ast.Call) and
                getattr(call.func, "id", getattr(call.func, "attr", None)) in ALIAS_HELPERS for n in ast.walk(call)}

    def add(name: str, line: int, alias: bool = False) -> None:
        target = _target(name, mods)
        if target is not None and target != module and alias == aliases:
            found.setdefault(target, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "coreecho":
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "coreecho":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                add(sub if sub in mods else source, node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.fullmatch(node.value):
            name = node.value.partition(":")[0]
            if name in mods:  # an exact module name, imported by name at run time
                add(name, node.lineno, alias=id(node) in in_alias)
    return found


def _layer(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (prefix != "coreecho" and module.startswith(prefix + "."))
            if inside and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"{module} is in no layer of tests/test_imports.py: add it to LAYERS"
    return rank


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    mods = _modules()
    return {m: _edges(m, p, mods) for m, p in mods.items()}


@pytest.fixture(scope="module")
def alias_graph() -> dict[str, dict[str, int]]:
    mods = _modules()
    return {m: _edges(m, p, mods, aliases=True) for m, p in mods.items()}


def _cycles(graph: dict[str, dict[str, int]]) -> list[tuple[list[str], list[str]]]:
    """``(modules, one shortest cycle)`` of each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for comp in components:
        members, start = set(comp), comp[0]
        paths, seen, cycle = [[start]], {start}, None
        while paths and cycle is None:  # breadth first from start back to start, inside the component
            nxt = []
            for p in paths:
                for w in sorted(graph[p[-1]]):
                    if w == start:
                        cycle = p + [start]
                        break
                    if w in members and w not in seen:
                        seen.add(w)
                        nxt.append(p + [w])
                if cycle:
                    break
            paths = nxt
        cycles.append((comp, cycle or comp))
    return cycles


def _show(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_every_module_is_in_a_layer(graph):
    for module in graph:
        _layer(module)


def test_no_import_cycle(graph):
    cycles = _cycles(graph)
    report = []
    for comp, cycle in cycles:
        members = set(comp)
        edges = [f"    {a} (line {line}) -> {b}" for a in sorted(members) for b, line in sorted(graph[a].items())
                 if b in members]
        report.append(f"cycle: {_show(cycle, graph)}\n  every import among its modules:\n" + "\n".join(edges))
    print("\n".join(report))
    assert not cycles, "import cycles in coreecho/:\n" + "\n".join(report)


def test_imports_run_one_way(graph, alias_graph):
    bad = []
    for module in sorted(graph):
        for target, line in sorted({**alias_graph[module], **graph[module]}.items()):
            if _layer(target) > _layer(module):
                bad.append(f"{module} (line {line}, layer {LAYERS[_layer(module)][0]}) imports {target} "
                           f"(layer {LAYERS[_layer(target)][0]})")
    for line in bad:
        print(line)
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_the_checker_sees_function_level_typing_and_string_imports(tmp_path):
    """The graph is not blind: imports inside functions, under TYPE_CHECKING and by name in strings all count."""
    mods = {"coreecho.a": tmp_path / "a.py", "coreecho.b": tmp_path / "b.py", "coreecho.c": tmp_path / "c.py",
            "coreecho.d": tmp_path / "d.py", "coreecho.e": tmp_path / "e.py"}
    mods["coreecho.a"].write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from coreecho.b import X\n"
                                  "def f():\n    from . import c\n    import coreecho.d.x\n"
                                  "TABLE = {'g': 'coreecho.e:g', 'note': 'see coreecho.e for details'}\n"
                                  "__getattr__ = deprecated_aliases(__name__, {'old': 'coreecho.c'})\n")
    for name in "bcde":
        mods[f"coreecho.{name}"].write_text("")
    assert set(_edges("coreecho.a", mods["coreecho.a"], mods)) == {"coreecho.b", "coreecho.c", "coreecho.d",
                                                                    "coreecho.e"}
    assert set(_edges("coreecho.a", mods["coreecho.a"], mods, aliases=True)) == {"coreecho.c"}
    cyclic = {"coreecho.a": {"coreecho.b": 1}, "coreecho.b": {"coreecho.c": 2}, "coreecho.c": {"coreecho.a": 3},
              "coreecho.d": {"coreecho.a": 4}}
    assert _cycles(cyclic) == [(["coreecho.a", "coreecho.b", "coreecho.c"],
                                ["coreecho.a", "coreecho.b", "coreecho.c", "coreecho.a"])]
    with pytest.raises(AssertionError, match="in no layer"):
        _layer("coreecho.some_new_module")
    assert _layer("coreecho.video.pipeline") < _layer("coreecho.models.coreecho") < _layer("coreecho.engine") \
        < _layer("coreecho.hub.folder") < _layer("coreecho.train.stage1") < _layer("coreecho.cli.predict")


def test_model_operations_are_declared_by_the_package():
    """The model's high-level methods run functions of the layers above, bound by name in coreecho/__init__."""
    import coreecho  # noqa: F401 - the package root declares the operations
    from coreecho._lazy import operation
    from coreecho.hub.folder import save_pretrained
    from coreecho.hub.resolve import load_model
    from coreecho.inference import embed, predict_ef
    from coreecho.models.coreecho import CoReEcho

    bound = {name: operation(name) for name in CoReEcho.OPERATIONS}
    assert bound["predict_ef"] is predict_ef and bound["embed"] is embed
    assert bound["save_pretrained"] is save_pretrained and bound["load_model"] is load_model
    assert all(callable(f) for f in bound.values())
    with pytest.raises(LookupError, match="no operation"):
        operation("no-such-operation")
