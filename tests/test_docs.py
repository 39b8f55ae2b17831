"""The documentation names code that exists: every ``from planner... import ...`` line in the README and
docs imports, and every repository path it cites in backticks is there (docs move with the code)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", ROOT / "profiles" / "README.md", ROOT / "benchmarks" / "README.md",
               *(ROOT / "docs").glob("*.md")])
IMPORT = re.compile(r"^(from planner[\w.]* import [\w, ]+)$", re.M)
PATH = re.compile(r"`((?:planner|solvers|profiles|tests|benchmarks|examples|docs)/[\w./-]+\.(?:py|md|json|yaml|sh))`")


def _lines(pattern):
    return sorted({(doc.relative_to(ROOT).as_posix(), m.group(1)) for doc in DOCS
                   for m in pattern.finditer(doc.read_text(encoding="utf-8"))})


@pytest.mark.parametrize("doc, line", _lines(IMPORT), ids=lambda x: x)
def test_documented_imports_resolve(doc, line):
    exec(line, {})


@pytest.mark.parametrize("doc, path", _lines(PATH), ids=lambda x: x)
def test_documented_paths_exist(doc, path):
    assert (ROOT / path).exists(), f"{doc} cites {path}, which is not in the repository"


def test_ci_runs_exactly_the_readme_test_command():
    """`.ci/run` ends with the README's quick-start test command, character for character."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    last = [l for l in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if l.strip()][-1]
    assert last.startswith("python3 -m venv .venv") and "pytest" in last
    assert f"```bash\n{last}\n```" in readme
