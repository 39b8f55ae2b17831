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
