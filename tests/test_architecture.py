"""House rules on imports (STYLE.md habit 1): solvers/ knows arrays only, torch and transformers live in
planner/runtime/ and are imported there only inside functions, nothing imports the CLI."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _py(folder: str):
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _py("solvers"), ids=lambda p: p.name)
def test_solvers_never_import_planner(path):
    bad = {n for n in _imports(path) if n == "planner" or n.startswith("planner.")}
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", _py("planner") + _py("solvers"), ids=lambda p: str(p.relative_to(ROOT)))
def test_torch_only_in_runtime(path):
    if "runtime" in path.relative_to(ROOT).parts:
        return
    bad = {n for n in _imports(path) if n == "torch" or n.startswith("torch.")}
    assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("path", _py("planner") + _py("solvers"), ids=lambda p: str(p.relative_to(ROOT)))
def test_transformers_only_in_runtime(path):
    if "runtime" in path.relative_to(ROOT).parts:
        return
    bad = {n for n in _imports(path) if n == "transformers" or n.startswith("transformers.")}
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


@pytest.mark.parametrize("path", _py("planner/runtime"), ids=lambda p: p.name)
def test_runtime_imports_torch_and_transformers_only_inside_functions(path):
    """Importing any runtime module stays cheap and works without torch or transformers."""
    top = _module_level_imports(ast.parse(path.read_text(encoding="utf-8")))
    bad = {n for n in top if n.split(".")[0] in ("torch", "transformers")}
    assert not bad, f"{path} imports {bad} at module level"


@pytest.mark.parametrize("path", _py("planner") + _py("solvers"), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_outside_cli_imports_cli(path):
    if "cli" in path.relative_to(ROOT).parts:
        return
    bad = {n for n in _imports(path) if n.startswith("planner.cli")}
    assert not bad, f"{path} imports {bad}"


def test_no_shared_folder_at_run_time():
    """The project stands alone: no code, test or example reads the workplace's shared folder."""
    files = _py("planner") + _py("solvers") + _py("tests") + _py("examples") + _py("benchmarks")
    needles = ("../shared", "/work/" + "shared")
    offenders = [p for p in files if p.name != "test_architecture.py" and any(n in p.read_text(encoding="utf-8") for n in needles)]
    assert not offenders, offenders
