"""The package's shape: no import cycles, the terminal only in ``cli/``, modules of a readable size.

Read from the source with :mod:`ast` (nothing is imported), so these run in well under a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "headstart"
MAX_LINES = 500
TERMINAL = ("typer", "rich", "click")  # only headstart.cli talks to the terminal


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is imported (not in functions, not under TYPE_CHECKING)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            found += ([] if _is_type_checking(node) else _module_level(node.body)) + _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            found += _module_level(node.body) + _module_level(node.orelse) + _module_level(node.finalbody)
            for handler in node.handlers:
                found += _module_level(handler.body)
    return found


def _everywhere(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run, also inside functions (the deferred ones that hide a cycle from
    Python); imports under ``if TYPE_CHECKING:`` never run, so they are left out."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
                    mods: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = (module if is_package else module.rpartition(".")[0]).split(".")
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    # `from pkg import sub` imports the submodule pkg.sub; `from mod import name` imports mod.
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]


def import_graph(*, deferred: bool) -> dict[str, set[str]]:
    """headstart module -> the headstart modules it imports (module level, or also ``deferred``)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = _everywhere(tree) if deferred else _module_level(tree.body)
        targets = set()
        for node in nodes:
            for name in _imported_names(node, module, path.name == "__init__.py", mods):
                while name and name not in mods:  # headstart.x.y.NAME -> headstart.x.y
                    name = name.rpartition(".")[0]
                if name and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe(found: list[list[str]], graph: dict[str, set[str]]) -> str:
    lines = []
    for component in found:
        members = set(component)
        edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
        lines.append("; ".join(edges))
    return "\n".join(lines)


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_level_import_cycle() -> None:
    graph = import_graph(deferred=False)
    assert graph.get("headstart.classifier")  # the walk sees the package
    found = cycles(graph)
    assert not found, f"module-level import cycles inside headstart:\n{_describe(found, graph)}"


def test_no_import_cycle_hidden_in_a_function() -> None:
    # A cycle through an import inside a function still runs (Python defers it), but it ties the
    # layers together: the lower module must not reach up (move the shared name down instead).
    graph = import_graph(deferred=True)
    found = cycles(graph)
    assert not found, f"import cycles inside headstart (counting imports in functions):\n{_describe(found, graph)}"


def test_only_the_cli_imports_the_terminal_libraries() -> None:
    offenders = []
    for module, path in _modules().items():
        if module == "headstart.cli" or module.startswith("headstart.cli."):
            continue
        for node in _everywhere(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            offenders += [f"{module} imports {n}" for n in names
                          if n.split(".")[0] in TERMINAL or n == "headstart.cli" or n.startswith("headstart.cli.")]
    offenders = [o for o in offenders if not o.startswith("headstart.__main__ ")]  # `python -m headstart`
    assert not offenders, "terminal code outside headstart.cli: " + "; ".join(offenders)


def _line_counts() -> dict[str, int]:
    return {path.relative_to(SRC).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
            for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_over_the_line_limit() -> None:
    counts = _line_counts()
    too_long = {name: n for name, n in counts.items() if n > MAX_LINES}
    assert not too_long, (f"modules over {MAX_LINES} lines: {too_long}. Split them by concept "
                          "(STYLE.md: files under ~500 lines).")


def test_engine_names_are_listed_once() -> None:
    # One enum (headstart.serving.engine_names) for the library, `predict --engine` and `serve --engine`.
    from headstart.serving.engine_names import ENGINES

    assert ENGINES == ("auto", "torch", "onnx", "onnx-int8")
    lists = []
    for module, path in _modules().items():
        if module == "headstart.serving.engine_names":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            elif isinstance(node, ast.ClassDef):
                values = {s.value.value for s in node.body
                          if isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant)}
            else:
                continue
            if {"torch", "onnx"} <= values:
                lists.append(f"{module}:{node.lineno}")
    assert not lists, f"engine names listed again (use headstart.serving.engine_names): {lists}"


def test_one_json_converter_for_numpy_and_paths(capsys: pytest.CaptureFixture[str]) -> None:
    # --json output, the service's /metadata and tracking's parameters convert alike: a numpy
    # integer stays a number (json.dumps(default=str) used to print it as a string).
    import json

    import numpy as np

    from headstart.cli.render import print_json
    from headstart.jsonable import jsonable
    from headstart.serving.service import _plain
    from headstart.tracking import _text

    value = {"n": np.int64(5), "x": np.float32(0.5), "ok": np.bool_(True), "p": Path("a") / "b",
             "t": (1, np.arange(2)), 3: None}
    expected = {"n": 5, "x": 0.5, "ok": True, "p": str(Path("a") / "b"), "t": [1, [0, 1]], "3": None}
    assert jsonable(value) == expected
    print_json(value)
    assert json.loads(capsys.readouterr().out) == expected
    assert _plain(value) == expected
    assert json.loads(_text(value["t"])) == [1, [0, 1]]
    assert jsonable({"when": object}, default=str) == {"when": str(object)}
    assert jsonable({"when": object}) == {"when": object}  # json.dumps refuses it, as before


# Modules that may name a modality: the modalities themselves, and backbones (each declares the
# modality it takes). Everything else asks ``headstart.modalities.get_modality(name)``.
MODALITY_HOMES = ("headstart/modalities/", "headstart/backbones/")
BUILTIN_MODALITIES = {"text", "image"}
# Where the same words mean something else.
NOT_MODALITIES = {"headstart/report/html.py": "a preview's kind is its format (a text snippet, an image data URI)"}


def _modality_branches(tree: ast.Module) -> list[int]:
    """Lines comparing something with a built-in modality's name (``x == "text"``, ``m in ("text", "image")``)
    or holding a table keyed by them (``{"image": 2e-3, "text": 1e-3}[modality]``)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if len(keys & BUILTIN_MODALITIES) > 1:
                lines.append(node.lineno)
            continue
        if not isinstance(node, ast.Compare):
            continue
        for operand in (node.left, *node.comparators):
            values = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            if any(isinstance(v, ast.Constant) and v.value in BUILTIN_MODALITIES for v in values):
                lines.append(node.lineno)
                break
    return lines


def test_modality_branch_finder_finds_one() -> None:
    assert _modality_branches(ast.parse('if data.modality == "image":\n    pass\nok = kind in ("text", "x")')) == [1, 3]
    assert _modality_branches(ast.parse('lr = {"image": 2e-3, "text": 1e-3}[modality]')) == [1]


def test_no_module_branches_on_a_modality_name() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name.startswith(MODALITY_HOMES) or name in NOT_MODALITIES:
            continue
        found += [f"{name}:{line}" for line in _modality_branches(ast.parse(path.read_text()))]
    assert not found, ("these compare with a modality's name; ask the modality instead "
                       f"(headstart.modalities.get_modality(name).<what you need>): {', '.join(found)}")
