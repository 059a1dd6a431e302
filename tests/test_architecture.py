"""The shape of the house: data flows one way (no import circles, the core never imports the CLI or
Qt), no private name crosses a module border, and docs/architecture.md lists every module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "napari_unet"
ROOT = PACKAGE.parent.parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out[".".join(["napari_unet", *parts])] = path
    return out


def _imports(name: str, path: Path):
    """(imported module, imported names) of every import in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def _graph():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for module, names in _imports(name, path):
            for candidate in [module] + [f"{module}.{n}" for n in names]:
                if candidate in modules and candidate != name:
                    deps.add(candidate)
        graph[name] = deps
    return graph


def test_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph[node]):
            if dep == "napari_unet":  # the lazy re-exports of the package
                continue
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack + [node, dep]))
            if dep not in state:
                visit(dep, stack + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_core_never_imports_the_cli_or_the_widgets():
    for name, deps in _graph().items():
        if name.startswith(("napari_unet._widgets", "napari_unet.cli")) or name in (
                "napari_unet.__main__", "napari_unet._gui", "napari_unet._sample_data"):
            continue
        bad = {d for d in deps if d.startswith(("napari_unet._widgets", "napari_unet.cli")) or d == "napari_unet._gui"}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_no_private_name_crosses_a_module_border():
    modules = _modules()
    crossings = []
    for name, path in modules.items():
        for module, names in _imports(name, path):
            if module.startswith("napari_unet") and module != name:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private and module != "napari_unet._version":
                    crossings.append(f"{name} imports {private} from {module}")
    assert not crossings, "\n".join(crossings)


def test_architecture_map_lists_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [p.name for p in PACKAGE.glob("*.py") if p.name not in text]
    missing += [p.name for p in (PACKAGE / "_widgets").glob("*.py") if p.name != "__init__.py" and p.name not in text]
    assert not missing, f"docs/architecture.md does not name {missing}"


MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 80


def _definitions(node, prefix=""):
    """(qualified name, kind, lines) of every class and function below ``node``, nested ones too."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            kind = "class" if isinstance(child, ast.ClassDef) else "function"
            yield prefix + child.name, kind, child.end_lineno - child.lineno + 1
            yield from _definitions(child, prefix + child.name + ".")
        else:
            yield from _definitions(child, prefix)


def test_no_module_class_or_function_over_its_size_limit():
    """One room per concern: a module of at most 600 lines, a class of at most 300, a function of
    at most 80 (from its ``def``/``class`` line to its last line, docstring included)."""
    limits = {"class": MAX_CLASS_LINES, "function": MAX_FUNCTION_LINES}
    too_long = []
    for name, path in sorted(_modules().items()):
        text = path.read_text()
        n_lines = len(text.splitlines())
        if n_lines > MAX_MODULE_LINES:
            too_long.append(f"module {name}: {n_lines} lines > {MAX_MODULE_LINES}")
        for qualname, kind, size in _definitions(ast.parse(text)):
            if size > limits[kind]:
                too_long.append(f"{kind} {name}.{qualname}: {size} lines > {limits[kind]}")
    assert not too_long, "\n".join(too_long)
