"""The shape of the house: wings by stage of the data that import only the wings below them (no
import circles, the core never imports the CLI or Qt), no private name crosses a module border, no
name is imported from a module that only re-exports it, at most 12 modules a folder, and
docs/architecture.md maps every module."""

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
        if _wing(name) in ("_widgets", "cli", "__main__", "_gui", "_sample_data"):
            continue
        bad = {d for d in deps if _wing(d) in ("_widgets", "cli", "_gui")}
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
    missing = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" and p.name not in text]
    missing += [f"{p.relative_to(PACKAGE)}/" for p in PACKAGE.rglob("*") if p.is_dir() and (p / "__init__.py").exists()
                and p != PACKAGE and f"{p.name}/" not in text]
    assert not missing, f"docs/architecture.md does not name {missing}"


# Wings by stage of the data, lowest first: a module imports only from its own wing and from
# wings of lower rows (the package root's modules are wings of their own).
RANKS = [
    ("common", "samples", "_version"),
    ("config",),
    ("files",),
    ("model",),
    ("annotations",),
    ("dataset", "predict"),
    ("labels",),
    ("training", "export", "cluster"),
    ("cli", "_widgets", "data", "io", "tiling", "_sample_data"),
    ("_gui",),
    ("__main__",),
]
RANK = {wing: rank for rank, wings in enumerate(RANKS) for wing in wings}
MAX_FOLDER_MODULES = 12


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "napari_unet"


def test_every_wing_imports_only_the_wings_below_it():
    wrong = []
    for name, deps in sorted(_graph().items()):
        if name == "napari_unet":  # the lazy public names
            continue
        wing = _wing(name)
        assert wing in RANK, f"{name}: its wing {wing!r} is not in RANKS"
        for dep in sorted(deps):
            if _wing(dep) != wing and dep != "napari_unet" and RANK[_wing(dep)] >= RANK[wing]:
                wrong.append(f"{name} ({wing}, row {RANK[wing]}) imports {dep} (row {RANK[_wing(dep)]})")
    assert not wrong, "\n".join(wrong)


def test_no_folder_holds_more_than_12_modules_and_each_says_what_it_holds():
    for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir() and (p / "__init__.py").exists())]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= MAX_FOLDER_MODULES, f"{folder.relative_to(PACKAGE.parent)}: {len(modules)} modules"
        if folder != PACKAGE:
            assert ast.get_docstring(ast.parse((folder / "__init__.py").read_text())), f"{folder.name}/__init__.py: no purpose"


def _top_level_names(path: Path) -> tuple[set[str], set[str]]:
    """(names a module defines, names it only imports) at its top level."""
    defined, imported = set(), set()
    stack = list(ast.parse(path.read_text()).body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imported.update((a.asname or a.name).split(".")[0] for a in node.names)
        else:
            for field in ("body", "orelse", "handlers", "finalbody"):
                stack.extend(getattr(node, field, []) or [])
    return defined, imported - defined


def test_every_name_is_imported_from_the_module_that_defines_it():
    """One import path per name: no module of the package imports a name from a module that only
    imported it (a re-export), and no module lists such a name in its ``__all__``."""
    modules = _modules()
    names = {name: _top_level_names(path) for name, path in modules.items()}
    chains = []
    for name, path in modules.items():
        for module, imported in _imports(name, path):
            if module not in modules or module == "napari_unet":
                continue
            for n in imported:
                if f"{module}.{n}" not in modules and n in names[module][1]:
                    chains.append(f"{name} imports {n} from {module}, which imports it")
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                try:
                    exported = ast.literal_eval(node.value)
                except ValueError:  # the package's lazy names: __all__ = [..., *_EXPORTS]
                    exported = []
                chains += [f"{name}.__all__ lists {n}, which it imports" for n in exported if n in names[name][1]]
    assert not chains, "\n".join(chains)


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


def test_options_cross_module_borders_as_typed_objects():
    """No dict of options crosses a module border inside the package: a parameter called
    ``options`` (or ``*_options``) takes a LabelOptions or a PredictOptions, and a catch-all
    ``**..._kwargs`` belongs to a public keyword entry point (which builds the object)."""
    public_kwargs = {"iter_segment", "segment", "predict_half_scale", "add_large_cells", "model_preset", "but",
                     "upsert_layer", "write_plane_layer", "_write", "__init__"}
    wrong = []
    for name, path in sorted(_modules().items()):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            for arg in args:
                if arg.arg == "options" or arg.arg.endswith("_options"):
                    note = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                    if "LabelOptions" not in note and "PredictOptions" not in note:
                        wrong.append(f"{name}.{node.name}({arg.arg}: {note or 'no type'})")
            if node.args.kwarg is not None and node.name not in public_kwargs:
                wrong.append(f"{name}.{node.name}(**{node.args.kwarg.arg})")
    assert not wrong, "\n".join(wrong)
