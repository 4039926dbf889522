# SPDX-License-Identifier: MIT
"""Record loading and condition labels: formats, one-line errors, label inference, dataset
stems, bare-answer references from a dataset's none-level sibling file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from thoughtgrad.errors import UserError
from thoughtgrad.tasks.records import (
    Labels,
    dataset_stem,
    infer_labels,
    load_many,
    load_records,
    read_rows,
    source_names,
)

ROWS = [
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"instruction": "Add these:", "input": "4 and 6",
     "output": "4 + 6 = 10\nThe final answer is 10"},
]
LAB = Labels("s", None, "correct", "s")


def _write(path: Path, rows, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet"])
def test_formats_read_the_same_records(tmp_path, fmt):
    p = _write(tmp_path / f"d.{fmt}", ROWS, fmt)
    recs = load_records(p, LAB)
    assert [r.sample_id for r in recs] == [0, 1]
    assert recs[0].prompt == "Add 2 and 3."
    assert recs[1].prompt == "Add these:\n4 and 6"
    assert recs[1].output == ROWS[1]["output"]
    assert [r.sample_id for r in load_records(p, LAB, limit=1)] == [0]


def test_custom_fields_and_numbers_as_text(tmp_path):
    p = _write(tmp_path / "q.jsonl", [{"question": "1+1?", "answer": 2}], "jsonl")
    (rec,) = load_records(p, LAB, prompt_field="question", response_field="answer")
    assert (rec.prompt, rec.output) == ("1+1?", "2")


def test_missing_field_names_file_record_field(tmp_path):
    p = _write(tmp_path / "d.json", [ROWS[0], {"instruction": "x", "input": ""}], "json")
    with pytest.raises(UserError) as e:
        load_records(p, LAB)
    msg = str(e.value)
    assert str(p) in msg and "record 1" in msg and "'output'" in msg and "missing" in msg
    assert "\n" not in msg


def test_empty_response(tmp_path):
    p = _write(tmp_path / "d.jsonl", [ROWS[0], ROWS[1], {"instruction": "x", "output": "  "}],
               "jsonl")
    with pytest.raises(UserError, match=r"record 2: field 'output': empty response"):
        load_records(p, LAB)
    assert len(load_records(p, LAB, limit=2)) == 2  # records past the limit are not read


def test_invalid_jsonl_names_the_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(ROWS[0]) + "\n\n" + '{"instruction": "x", "output": \n')
    with pytest.raises(UserError, match=r"d\.jsonl: invalid JSON on line 3 \(record 1\)"):
        load_records(p, LAB)


def test_invalid_json_names_line_and_column(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": oops}\n]')
    with pytest.raises(UserError, match=r"d\.json: invalid JSON at line 3:19"):
        load_records(p, LAB)


def test_not_a_list_and_not_objects(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('{"data": []}')
    with pytest.raises(UserError, match="expected a JSON array"):
        read_rows(p)
    p.write_text('["a", "b"]')
    with pytest.raises(UserError, match="record 0: expected an object"):
        read_rows(p)
    with pytest.raises(UserError, match="no such data file"):
        read_rows(tmp_path / "missing.json")
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="unknown data format"):
        read_rows(tmp_path / "d.csv")


@pytest.mark.parametrize(("path", "level", "kind", "condition"), [
    ("cot_500/gsm8k_train_no_cot.json", "none", "correct", "none/correct"),
    ("cot_500/gsm8k_train_with_cot.json", "simplified", "correct", "simplified/correct"),
    ("cot_500/gsm8k_train_with_cot_gpt4o.json", "detailed", "correct", "detailed/correct"),
    ("cot_500_wrong_answer_shuffle/aqua_train_with_cot_gpt4o.json", "detailed", "irrelevant",
     "detailed/irrelevant"),
    ("wiki_popularity/popular_wikipedia_500.json", None, "correct", "popular_wikipedia_500"),
    ("wiki_popularity_wrong_answer_shuffle/long_tail_wikipedia.json", None, "irrelevant",
     "long_tail_wikipedia/irrelevant"),
    ("out/gsm8k_train_with_cot_half_steps.json", "half_steps", "correct", "half_steps/correct"),
    ("out/gsm8k_train_with_cot_corrupted.json", "simplified", "corrupted",
     "simplified/corrupted"),
    ("out/gsm8k_train_with_cot_gpt4o_irrelevant.json", "detailed", "irrelevant",
     "detailed/irrelevant"),
])
def test_labels_from_file_names(tmp_path, path, level, kind, condition):
    lab = infer_labels(tmp_path / path)
    assert (lab.cot_level, lab.response_kind, lab.condition) == (level, kind, condition)
    assert lab.source == Path(path).stem
    assert infer_labels(tmp_path / path, condition="mine").condition == "mine"


def test_source_names_disambiguate_shared_stems(tmp_path):
    paths = [tmp_path / "cot_500" / "g.json", tmp_path / "cot_500_wrong_answer_shuffle" / "g.json",
             tmp_path / "cot_500" / "h.json"]
    assert source_names(paths) == ["cot_500/g", "cot_500_wrong_answer_shuffle/g", "h"]
    deep = [tmp_path / "a" / "x" / "g.json", tmp_path / "b" / "x" / "g.json"]
    assert source_names(deep) == ["a/x/g", "b/x/g"]


def test_load_many_labels_every_record(tmp_path):
    a = _write(tmp_path / "cot_500" / "t_no_cot.json", ROWS, "json")
    b = _write(tmp_path / "cot_500_wrong_answer_shuffle" / "t_no_cot.json", ROWS[::-1], "json")
    recs = load_many([a, b])
    assert [(r.labels.source, r.sample_id, r.labels.condition) for r in recs] == [
        ("cot_500/t_no_cot", 0, "none/correct"), ("cot_500/t_no_cot", 1, "none/correct"),
        ("cot_500_wrong_answer_shuffle/t_no_cot", 0, "none/irrelevant"),
        ("cot_500_wrong_answer_shuffle/t_no_cot", 1, "none/irrelevant")]
    per_file = load_many([a, b], conditions=["x", "y"])
    assert [r.labels.condition for r in per_file] == ["x", "x", "y", "y"]
    with pytest.raises(UserError, match="--condition given 3 times for 2"):
        load_many([a, b], conditions=["x", "y", "z"])
    with pytest.raises(UserError, match="given twice"):
        load_many([a, a])


@pytest.mark.parametrize(("stem", "dataset"), [
    ("gsm8k_train_no_cot", "gsm8k_train"),
    ("gsm8k_train_with_cot_gpt4o", "gsm8k_train"),
    ("gsm8k_train_with_cot_gpt4o_detailed", "gsm8k_train"),  # a variants file
    ("gsm8k_train_with_cot_corrupted", "gsm8k_train"),
    ("gsm8k_train_with_cot_gpt4o_half_steps", "gsm8k_train"),
    ("popular_wikipedia_500", "popular_wikipedia_500"),
    ("_none", "_none"),  # a suffix alone is a name, not a suffix
])
def test_dataset_stem_strips_every_suffix(stem, dataset):
    assert dataset_stem(stem) == dataset


def test_cot_files_get_the_bare_answers_of_their_none_sibling(tmp_path):
    qs = [{"instruction": f"What is {i} + 1?", "input": ""} for i in range(3)]
    none = _write(tmp_path / "cot_500" / "t_no_cot.json",
                  [{**q, "output": f" {i + 1} "} for i, q in enumerate(qs)], "json")
    cot = _write(tmp_path / "cot_500" / "t_with_cot_gpt4o.json",
                 [{**q, "output": f"{i} + 1 = {i + 1}. So {i + 1}."} for i, q in enumerate(qs)],
                 "json")
    moved = [dict(q) for q in qs]
    moved[2]["instruction"] = "Another question?"
    simp = _write(tmp_path / "cot_500" / "t_with_cot.json",
                  [{**q, "output": "x"} for q in moved], "json")
    shuffled = _write(tmp_path / "cot_500_wrong_answer_shuffle" / "t_with_cot_gpt4o.json",
                      [{**q, "output": "y"} for q in qs], "json")
    other = _write(tmp_path / "elsewhere" / "t_with_cot_gpt4o.json",
                   [{**q, "output": "z"} for q in qs], "json")
    recs = load_many([cot, none, simp, shuffled, other], limit=3)
    refs = {(r.labels.source, r.sample_id): r.reference for r in recs}
    assert [refs[("cot_500/t_with_cot_gpt4o", i)] for i in range(3)] == ["1", "2", "3"]
    assert [refs[("t_with_cot", i)] for i in range(3)] == ["1", "2", None]  # prompt differs
    assert all(refs[("t_no_cot", i)] is None for i in range(3))  # the answers themselves
    # irrelevant responses answer other questions; a file in another folder has no sibling
    assert all(refs[(src, i)] is None for i in range(3)
               for src in ("cot_500_wrong_answer_shuffle/t_with_cot_gpt4o",
                           "elsewhere/t_with_cot_gpt4o"))
    assert all(r.reference is None for r in load_many([cot]))  # sibling not given
