"""Regenerate the expert-load fixtures in this directory: ``python tests/data/loads/make_fixtures.py``.

``good/`` holds small valid files of every format; ``bad/`` one file (or one directory of files read
together) per input error. ``tests/test_loads_readers.py`` lists the problem each bad entry must
report and checks that every entry is listed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# Two SGLang-style rank files of a model with 8 experts whose MoE layers are 3 and 4: each rank
# lists only the experts that received tokens (SGLang's first recorder wrote a Counter per layer).
RANK0 = "layer_id,expert_id,count\n3,0,25\n3,5,39\n3,7,13\n4,1,20\n4,2,11\n\n4,6,30\n"
RANK1 = "layer_id,expert_id,count\n3,5,33\n3,6,14\n4,1,7\n4,7,2\n"

# logical_count as SGLang's expert-distribution recorder dumps it: [steps, hidden layers, experts];
# hidden layer 0 is dense (no experts), so its rows are zero.
LOGICAL_COUNT = [
    [[0, 0, 0, 0], [5, 1, 0, 2], [3, 3, 1, 1]],
    [[0, 0, 0, 0], [4, 2, 2, 0], [0, 6, 2, 0]],
]


def _write(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content) + "\n", encoding="utf-8")


def _npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez(fh, **arrays)


def good(root: Path) -> None:
    _write(root / "rank0.csv", RANK0)
    _write(root / "rank1.csv", RANK1)
    _write(root / "sglang_logical_count.json",
           {"logical_count": LOGICAL_COUNT, "average_utilization_rate_over_window": 0.5})
    _write(root / "sglang_logical_count_2d.json", {"logical_count": LOGICAL_COUNT[0]})
    _write(root / "moeplan.json", {
        "counts": [[[1, 2, 3, 4], [4, 3, 2, 1]], [[2, 2, 2, 2], [0, 0, 8, 0]]],
        "layer_ids": [1, 3],
        "model": "tiny-moe",
        "provenance": {"source": "unit test", "license": "CC0-1.0", "date": "2026-01-02"},
    })
    _write(root / "bare_list.json", [[1.5, 2.5, 0.0], [3, 3, 3]])
    _npz(root / "counts_3d.npz", counts=np.arange(24, dtype=np.int64).reshape(2, 3, 4),
         layer_ids=np.array([2, 4, 6]), model=np.array("tiny-moe"))
    _npz(root / "counts_2d.npz", counts=np.array([[1.0, 0.0], [0.5, 0.5]]))
    # Content sniffing: extensions that say nothing.
    _write(root / "json_no_ext", [[1, 2], [3, 4]])
    _write(root / "rank_dump.txt", RANK1)
    shutil.copyfile(root / "counts_2d.npz", root / "counts.bin")


def bad(root: Path) -> None:
    j = lambda name, doc: _write(root / name, doc)  # noqa: E731
    t = lambda name, text: _write(root / name, text)  # noqa: E731
    # JSON
    t("empty.json", "")
    t("blank.json", "  \n\n")
    t("malformed.json", '{\n  "counts": [[1, 2],\n    [3 4]]\n}\n')
    j("unknown_layout.json", {"loads": [[1, 2]], "experts": 2})
    j("scalar_top.json", 42)
    j("ragged_rows.json", {"counts": [[1, 2, 3], [1, 2]]})
    j("ragged_depth.json", {"counts": [[1, 2], [3, [4]]]})
    j("ragged_steps.json", {"counts": [[[1, 2], [3, 4]], [[1, 2]]]})
    j("four_d.json", {"counts": [[[[1, 2]]]]})
    j("one_d.json", [1, 2, 3])
    j("empty_counts.json", {"counts": [[]]})
    j("string_in_counts.json", {"counts": [[1, "2"], [3, 4]]})
    j("null_in_counts.json", {"counts": [[1, 2], [None, 4]]})
    j("bool_in_counts.json", {"counts": [[1, 2], [3, True]]})
    j("negative_count.json", {"counts": [[1, 2], [3, -4]]})
    t("nan_count.json", '{"counts": [[1, NaN], [3, 4]]}\n')
    t("inf_count.json", '[[1, 2], [Infinity, 4]]\n')
    j("olmoe_num_experts.json", {"model": "allenai/OLMoE-1B-7B-0924", "num_experts": 64, "layers": [0, 7],
                                 "counts": [[1, 2, 3], [4, 5, 6]]})
    j("layer_ids_float.json", {"counts": [[1, 2], [3, 4]], "layer_ids": [0, 1.5]})
    j("layer_ids_length.json", {"counts": [[1, 2], [3, 4]], "layer_ids": [0, 1, 2]})
    j("layer_ids_duplicate.json", {"counts": [[1, 2], [3, 4]], "layer_ids": [5, 5]})
    j("sglang_4d.json", {"logical_count": [[[[1, 2]]]]})
    j("both_keys.json", {"counts": [[1, 2]], "logical_count": [[1, 2]]})
    j("model_not_string.json", {"counts": [[1, 2]], "model": 7})
    j("provenance_not_object.json", {"counts": [[1, 2]], "provenance": "somewhere"})
    j("arg_num_experts.json", [[1, 2, 3], [4, 5, 6]])
    _write(root / "latin1.json", '{"counts": [[1, 2]], "model": "Mod\u00e8le"}'.encode("latin-1"))
    # npz
    t("empty.npz", "")
    t("not_a_zip.npz", "counts = [[1, 2], [3, 4]]\n")
    _npz(root / "no_counts.npz", loads=np.ones((2, 3)))
    _npz(root / "four_d.npz", counts=np.ones((1, 1, 2, 3)))
    _npz(root / "bool_counts.npz", counts=np.array([[True, False]]))
    _npz(root / "string_counts.npz", counts=np.array([["1", "2"]]))
    _npz(root / "pickled_counts.npz", counts=np.array([[1, None]], dtype=object))
    _npz(root / "negative.npz", counts=np.array([[1.0, -2.0]]))
    _npz(root / "nan.npz", counts=np.array([[1.0, np.nan]]))
    _npz(root / "layer_ids_float.npz", counts=np.ones((2, 2)), layer_ids=np.array([0.0, 1.0]))
    _npz(root / "model_not_string.npz", counts=np.ones((2, 2)), model=np.array(3))
    whole = root / "no_counts.npz"
    _write(root / "truncated.npz", whole.read_bytes()[: whole.stat().st_size // 2])
    # CSV
    t("wrong_header.csv", "layer,expert,count\n3,0,1\n")
    t("no_header.csv", "3,0,1\n3,1,2\n")
    t("header_only.csv", "layer_id,expert_id,count\n")
    t("layer_id_float.csv", "layer_id,expert_id,count\n3.5,0,1\n")
    t("expert_id_text.csv", "layer_id,expert_id,count\n3,0,1\n3,x,2\n")
    t("negative_expert_id.csv", "layer_id,expert_id,count\n3,-1,1\n")
    t("negative_layer_id.csv", "layer_id,expert_id,count\n-3,0,1\n")
    t("expert_id_too_big.csv", "layer_id,expert_id,count\n3,0,1\n3,8,1\n")
    t("expert_id_huge.csv", "layer_id,expert_id,count\n3,0,1\n3,1000000000,2\n")
    t("duplicate_row.csv", "layer_id,expert_id,count\n3,0,1\n3,1,2\n3,0,5\n")
    t("too_many_fields.csv", "layer_id,expert_id,count\n3,0,1,9\n")
    t("count_text.csv", "layer_id,expert_id,count\n3,0,many\n")
    t("count_negative.csv", "layer_id,expert_id,count\n3,0,-1\n")
    t("count_nan.csv", "layer_id,expert_id,count\n3,0,nan\n")
    # several files, read together
    dense = "layer_id,expert_id,count\n" + "".join(f"{layer},{e},10\n" for layer in (3, 4) for e in range(8))
    t("mismatch_ranks/rank0.csv", dense)
    t("mismatch_ranks/rank1.csv", "layer_id,expert_id,count\n3,63,4\n")
    j("two_json/a.json", [[1, 2]])
    j("two_json/b.json", [[3, 4]])
    t("csv_and_json/rank0.csv", RANK0)
    j("csv_and_json/counts.json", [[1, 2]])
    # unrecognised
    t("mystery.txt", "expert loads, probably\n")
    _write(root / "dump.pt", b"\x80\x02}q\x00X\x0c\x00\x00\x00logical_countq\x01.")


if __name__ == "__main__":
    for sub, make in (("good", good), ("bad", bad)):
        shutil.rmtree(HERE / sub, ignore_errors=True)
        make(HERE / sub)
