"""What a user's machine sees of the installed package: collision-safe top-level names, data found
through importlib.resources from any working directory, even one holding a ``profiles/`` folder."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocess end-to-end

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
from planner import builtin_loads, get_gpu, get_model, plan_replicas
from planner.perf.measured import list_compute_tables

assert get_model("deepseek-v3").num_routed_experts == 256
assert get_gpu("h100").memory_bytes == 80e9
assert ("h100", "Llama-2-7b-hf") in list_compute_tables()
plan = plan_replicas(builtin_loads("olmoe-arxiv"), "olmoe-1b-7b", num_gpus=8)
print("ok", plan.replicas.num_gpus)
"""


@pytest.mark.parametrize("as_package", [False, True], ids=["folder", "package"])
def test_a_profiles_folder_beside_a_script_does_not_shadow_the_data(tmp_path, as_package):
    """A user's own ``profiles/`` (a data folder, or a package of that name) next to their script."""
    mine = tmp_path / "profiles"
    (mine / "gpus").mkdir(parents=True)
    (mine / "gpus" / "h100.yaml").write_text("not: a profile\n", encoding="utf-8")
    if as_package:
        (mine / "__init__.py").write_text("MINE = True\n", encoding="utf-8")
    script = tmp_path / "script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["ok", "8"]


def test_the_wheel_installs_distinct_top_level_names(tmp_path):
    """The repository's ``profiles/`` folder ships as ``moeplan_profiles`` with all of its data files."""
    src = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info/ next to the sources
    for name in ("planner", "solvers", "profiles"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("moeplan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"planner", "solvers", "moeplan_profiles"}
    shipped = {n for n in names if n.startswith("moeplan_profiles/")}
    on_disk = {"moeplan_profiles/" + str(p.relative_to(ROOT / "profiles")) for p in (ROOT / "profiles").rglob("*")
               if p.is_file() and (p.suffix in (".yaml", ".csv", ".md", ".py", ".json") or p.name == "LICENSE")}
    assert on_disk <= shipped, sorted(on_disk - shipped)[:5]
    assert "planner/data/scenarios/default.yaml" in names and "planner/data/scenarios/olmoe-arxiv-ep8.json" in names and "planner/plans/plan.schema.json" in names
    data = {"planner/" + str(p.relative_to(ROOT / "planner")) for p in (ROOT / "planner" / "data").rglob("*")
            if p.is_file()}
    assert data <= set(names), sorted(data - set(names))[:5]  # traces (.csv, .jsonl), coefficients, provenance
    assert "planner/data/traces/mooncake-conversation.jsonl" in names
    # the simulator's C core, compiled by setup.py (optional for users; CI has a compiler)
    assert any(n.startswith("planner/perf/_simcore") and n.endswith((".so", ".pyd")) for n in names)
