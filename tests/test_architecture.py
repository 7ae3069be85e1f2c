"""The layers of docs/architecture.md, held against the code: each module imports only from its own
layer or below, never a private name of another module, and no module-level import circle.

Read from the source text (ast), so a lazy import inside a function counts like a top-level one;
imports under `if TYPE_CHECKING:` are for type checkers only and are left out.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "canonry"

# Higher layers may import lower ones (and their own), never the other way round.
LAYERS = {
    "canonry.cli": 6, "canonry.__main__": 6, "canonry.web": 6,
    "canonry.store": 5, "canonry.interop": 5,
    "canonry.sharing": 4, "canonry.review": 4,
    "canonry.query": 3, "canonry.automation": 3,
    "canonry": 2,  # core: ops, view, model, names, governance, journal, schemas, yamlio, …
    "canonry.git": 1, "canonry.files": 1,
    "canonry.errors": 0,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return LAYERS[best]


def _type_checking_only(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def _imports(module: str, top_level_only: bool = False) -> list[tuple[str, list[str], int]]:
    """(imported canonry module, names taken from it, line) for each import in `module`."""
    tree = ast.parse(MODULES[module].read_text())
    skip = _type_checking_only(tree)
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = []
    for node in nodes:
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "canonry":
            names = [a.name for a in node.names]
            submodules = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in MODULES]
            if submodules:  # `from canonry.git import storage`: the module storage is imported
                out += [(s, [], node.lineno) for s in submodules]
                names = [n for n in names if f"{node.module}.{n}" not in MODULES]
            if names or not submodules:
                out.append((node.module, names, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "canonry"]
        elif isinstance(node, ast.ImportFrom) and node.level:
            out.append(("<relative>", [], node.lineno))
    return out


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    if module == "canonry":  # the package's front door serves names from every layer, lazily
        return
    wrong = [f"line {line}: {target} (layer {_layer(target)})" for target, _names, line in _imports(module)
             if target == "<relative>" or _layer(target) > _layer(module)]
    assert not wrong, f"{module} (layer {_layer(module)}) imports from above it: {wrong}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_modules(module):
    private = [f"line {line}: {target}.{name}" for target, names, line in _imports(module)
               for name in names if name.startswith("_") and target != module]
    assert not private, f"{module} imports private names: {private}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_says_its_job_and_exports(module):
    tree = ast.parse(MODULES[module].read_text())
    assert ast.get_docstring(tree), f"{module}: no docstring saying what it is for"
    if MODULES[module].name == "__init__.py" and module != "canonry":
        return  # a subpackage's __init__ holds only its docstring
    assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets)
               for n in tree.body), f"{module}: no __all__"


def test_no_module_level_import_circle():
    graph = {m: {t for t, _n, _l in _imports(m, top_level_only=True) if t in MODULES and t != m}
             for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import circle: " + " -> ".join([*stack[stack.index(n):], n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def _all_of(module: str) -> set[str] | None:
    tree = ast.parse(MODULES[module].read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_names_taken_from_a_module_are_in_its_all(module):
    """`__all__` is each module's public interface: what other modules take from it is listed there."""
    missing = []
    for target, names, line in _imports(module):
        exported = _all_of(target) if target in MODULES and target != module else None
        if exported is not None and not target.endswith("__init__"):
            missing += [f"line {line}: {target}.{n}" for n in names if n not in exported and n != "*"]
    assert not missing, f"{module} takes names its modules do not export: {missing}"


def test_nothing_in_canonry_imports_the_mlflow_store():
    """canonry/interop/mlflow_store.py imports mlflow at its top and is loaded by MLflow (its
    entry point), never by canonry: a canonry command or `import canonry` must not pay for mlflow."""
    wrong = [f"{module} line {line}: {target}" for module in MODULES if module != "canonry.interop.mlflow_store"
             for target, _names, line in _imports(module) if target == "canonry.interop.mlflow_store"]
    assert not wrong, f"canonry.interop.mlflow_store is imported from canonry: {wrong}"
