"""House rules on structure (DESIGN.md §2, STYLE.md habit 1), checked on the source tree.

- solvers/ knows arrays only: it never imports planner/;
- torch and transformers live in planner/runtime/ and are imported there only inside functions;
- nothing imports the CLI;
- imports follow the data flow: a planner package imports only packages of a lower layer (or itself);
- every package declares ``__all__`` in its ``__init__``, every public module declares ``__all__``;
- no ``_private`` name is imported from another module, and a ``_private`` module only from its own package;
- a name imported from another module is in that module's ``__all__``;
- the wheel's package list (pyproject) is every package of the tree, the data folder under a distinct name.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# planner packages by layer: a package may import its own layer's members only where listed as lower
LAYERS = [
    {"errors"},
    {"common"},
    {"profiles"},
    {"inputs"},
    {"plans"},
    {"perf"},
    {"replicas", "migration"},
    {"deploy", "cluster"},
    {"runtime"},
    {"scenario", "whatif"},
    {"report"},
    {"cli"},
]
LAYER_OF = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def _py(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_nodes(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def _imports(path: Path) -> set[str]:
    names = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif node.module and node.level == 0:
            names.add(node.module)
    return names


def _pkg(module: str) -> str | None:
    """The planner package (second component) of a planner module name; the module itself at the top."""
    parts = module.split(".")
    if parts[0] != "planner" or len(parts) < 2:
        return None
    return parts[1]


PLANNER = _py("planner")
SOLVERS = _py("solvers")
CODE = PLANNER + SOLVERS
IDS = dict(ids=lambda p: str(p.relative_to(ROOT)))


@pytest.mark.parametrize("path", SOLVERS, **IDS)
def test_solvers_never_import_planner(path):
    bad = {n for n in _imports(path) if n == "planner" or n.startswith("planner.")}
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", CODE, **IDS)
def test_torch_and_transformers_only_in_runtime(path):
    if "runtime" in path.relative_to(ROOT).parts:
        return
    bad = {n for n in _imports(path) if n.split(".")[0] in ("torch", "transformers")}
    assert not bad, f"{path} imports {bad}"


def _module_level_imports(tree: ast.Module) -> set[str]:
    """Modules imported when the file is imported: everything outside function bodies and outside
    ``if TYPE_CHECKING:`` blocks."""
    names: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            visit(ast.iter_child_nodes(node))

    visit(tree.body)
    return names


@pytest.mark.parametrize("path", _py("planner/runtime"), **IDS)
def test_runtime_imports_torch_and_transformers_only_inside_functions(path):
    """Importing any runtime module stays cheap and works without torch or transformers."""
    top = _module_level_imports(ast.parse(path.read_text(encoding="utf-8")))
    bad = {n for n in top if n.split(".")[0] in ("torch", "transformers")}
    assert not bad, f"{path} imports {bad} at module level"


@pytest.mark.parametrize("path", CODE, **IDS)
def test_nothing_outside_cli_imports_cli(path):
    if "cli" in path.relative_to(ROOT).parts:
        return
    bad = {n for n in _imports(path) if n.startswith("planner.cli")}
    assert not bad, f"{path} imports {bad}"


def test_every_planner_package_has_a_layer():
    packages = {p.parent.name for p in (ROOT / "planner").glob("*/__init__.py")}
    modules = {p.stem for p in (ROOT / "planner").glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(LAYER_OF) | {"__main__"}, (packages | modules) - set(LAYER_OF)
    assert modules <= {"errors"}, f"loose modules at the top of planner/: {sorted(modules - {'errors'})}"


@pytest.mark.parametrize("path", [p for p in PLANNER if p.parent != ROOT / "planner"], **IDS)
def test_imports_follow_the_layers(path):
    own = _pkg(_module_name(path))
    bad = []
    for name in _imports(path):
        other = _pkg(name)
        if other is None or other == own:
            continue
        if LAYER_OF[other] >= LAYER_OF[own]:
            bad.append(name)
    assert not bad, f"{path} (layer {LAYER_OF[own]}, {own}) imports {bad} from its own or a higher layer"


@pytest.mark.parametrize("path", [p for p in CODE if p.name == "__init__.py"], **IDS)
def test_every_package_declares_all(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert any(
        isinstance(n, (ast.Assign, ast.AnnAssign))
        and any(getattr(t, "id", None) == "__all__" for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))
        for n in tree.body
    ), f"{path} declares no __all__"


@pytest.mark.parametrize("path", [p for p in CODE if not p.name.startswith("_")], **IDS)
def test_every_public_module_declares_all(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {
        t.id
        for n in tree.body
        if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign))
        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        if isinstance(t, ast.Name)
    }
    assert "__all__" in names, f"{path} declares no __all__"


@pytest.mark.parametrize("path", CODE, **IDS)
def test_no_private_name_crosses_a_module(path):
    """A name another module needs gets a public name; a ``_module`` is imported only in its package."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    bad = []
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in ("planner", "solvers"):
                continue
            bad += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names if a.name.split(".")[0] in ("planner", "solvers")]
        else:
            continue
        for mod in modules:
            parent, _, last = mod.rpartition(".")
            if last.startswith("_") and not last.startswith("__") and parent != package:
                bad.append(mod)
    assert not bad, f"{path} imports private {sorted(set(bad))}"


def test_wheel_packages_are_the_tree():
    """pyproject lists every package of the tree; the data folder ``profiles/`` installs as moeplan_profiles."""
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    tree = {_module_name(p) for p in CODE if p.name == "__init__.py"}
    assert set(cfg["packages"]) == tree | {"moeplan_profiles"}
    assert cfg["package-dir"] == {"moeplan_profiles": "profiles"}
    assert "profiles" not in cfg["packages"]


def test_no_shared_folder_at_run_time():
    """The project stands alone: no code, test or example reads the workplace's shared folder."""
    files = CODE + _py("tests") + _py("examples") + _py("benchmarks")
    needles = ("../shared", "/work/" + "shared")
    offenders = [p for p in files if p.name != "test_architecture.py" and any(n in p.read_text(encoding="utf-8") for n in needles)]
    assert not offenders, offenders


def _public_names(module: str) -> set[str] | None:
    """``__all__`` of a planner/solvers module, plus its submodules; None when it cannot be imported."""
    import importlib
    import pkgutil

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    names = set(getattr(mod, "__all__", ()))
    if hasattr(mod, "__path__"):
        names |= {m.name for m in pkgutil.iter_modules(mod.__path__)}
    return names


@pytest.mark.parametrize("path", CODE, **IDS)
def test_imports_use_only_public_names(path):
    """A name imported from another module is in that module's ``__all__`` (its public surface)."""
    here = _module_name(path)
    bad = []
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
            continue
        if node.module.split(".")[0] not in ("planner", "solvers") or node.module == here:
            continue
        public = _public_names(node.module)
        if public is None:
            continue
        bad += [f"{node.module}.{a.name}" for a in node.names
                if a.name != "*" and not a.name.startswith("__") and a.name not in public]
    assert not bad, f"{path} imports names outside their module's __all__: {sorted(set(bad))}"
