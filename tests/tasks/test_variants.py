# SPDX-License-Identifier: MIT
"""Variant builders: derangement, step splitting, half-steps, corrupted answers, file I/O."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thoughtgrad.errors import UserError
from thoughtgrad.tasks.records import infer_labels, read_rows
from thoughtgrad.tasks.variants import (
    KINDS,
    NUMBER,
    build_variant,
    corrupt_response,
    derangement,
    split_steps,
    variant_path,
    write_rows,
)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "layer_gradient"
GSM8K = SHARED / "cot_500" / "gsm8k_train_with_cot.json"

PETE_Q = ("Pete must pay $90. He finds two $20 bills and four $10 bills. If the store pays "
          "50 cents for each bottle, how many bottles will Pete have to return?")
PETE_A = ("Pete's wallet contains 2 * 20 = 40 dollars. The money in his pockets is 4 * 10 = 40 "
          "dollars. In total Pete has 40 + 40 = 80 dollars. He needs 90 - 80 = 10 more dollars. "
          "The number of bottles is 10 / (1 / 2) = 10 * 2 = 20 bottles.\nThe final answer is 20")
ROWS = [
    {"instruction": PETE_Q, "input": "", "output": PETE_A},
    {"instruction": "Sam has 3 apples and buys 5. How many?", "input": "",
     "output": "He has 3 + 5 = 8 apples.\nThe final answer is 8"},
    {"instruction": "A shirt costs $12. Three shirts?", "input": "",
     "output": "Step 1: the price is 12.\nStep 2: 3 * 12 = 36.\nStep 3: check 36 / 3 = 12.\n"
               "The final answer is 36"},
]


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 60), st.integers(0, 10_000))
def test_derangement_is_a_permutation_without_fixed_points(n, seed):
    perm = derangement(n, random.Random(seed))
    assert sorted(perm) == list(range(n))
    assert all(p != i for i, p in enumerate(perm))


def test_derangement_needs_two_records():
    with pytest.raises(UserError, match="at least 2"):
        derangement(1, random.Random(0))


def test_irrelevant_variant_gives_every_instruction_another_response():
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(30)]
    out = build_variant(rows, "irrelevant", seed=3).rows
    assert [r["instruction"] for r in out] == [r["instruction"] for r in rows]
    assert all(r["output"] != f"a{i}" for i, r in enumerate(out))
    assert Counter(r["output"] for r in out) == Counter(r["output"] for r in rows)
    assert out == build_variant(rows, "irrelevant", seed=3).rows  # seeded
    assert out != build_variant(rows, "irrelevant", seed=4).rows


def test_split_steps_sentences_lines_and_answer():
    s = split_steps(PETE_A)
    assert s.answer == "20" and s.answer_line == "The final answer is 20"
    assert len(s.steps) == 5 and s.steps[0].startswith("Pete's wallet") and s.sep == " "
    lines = split_steps(ROWS[2]["output"])
    assert lines.steps == ["Step 1: the price is 12.", "Step 2: 3 * 12 = 36.",
                           "Step 3: check 36 / 3 = 12."] and lines.answer == "36"
    bare = split_steps("42")
    assert bare.steps == [] and bare.answer == "42"


def test_none_simplified_detailed():
    none = build_variant(ROWS, "none").rows
    assert [r["output"] for r in none] == ["20", "8", "36"]
    simp = build_variant(ROWS, "simplified").rows[2]["output"]
    assert simp == "Step 1: the price is 12.\nStep 3: check 36 / 3 = 12.\nThe final answer is 36"
    assert build_variant(ROWS, "detailed").rows == ROWS


def test_half_steps_keeps_the_answer_and_half_the_steps():
    out = build_variant(ROWS, "half-steps", seed=1).rows
    for before, after in zip(ROWS, out, strict=True):
        b, a = split_steps(before["output"]), split_steps(after["output"])
        assert a.answer_line == b.answer_line
        assert len(a.steps) == len(b.steps) - len(b.steps) // 2
        it = iter(b.steps)
        assert all(step in it for step in a.steps)  # a subsequence: order kept
    draws = {build_variant(ROWS[:1], "half_steps", seed=s).rows[0]["output"] for s in range(12)}
    assert len(draws) > 1  # different seeds drop different steps


def _numbers(text: str) -> list[float]:
    return [float(m.group().replace(",", "")) for m in NUMBER.finditer(text)]


@pytest.mark.parametrize("seed", range(6))
def test_corrupted_answer_differs_and_problem_numbers_stay(seed):
    out = corrupt_response(PETE_Q, PETE_A, random.Random(seed))
    assert out is not None and out != PETE_A
    assert split_steps(out).answer != split_steps(PETE_A).answer
    problem = set(_numbers(PETE_Q))
    body_before = PETE_A[: PETE_A.rindex("\n")]
    body_after = out[: out.rindex("\n")]
    for value in problem:  # every mention of a problem number in the reasoning is kept
        assert _numbers(body_after).count(value) == _numbers(body_before).count(value)
    # Exactly one value changed, consistently: every changed position moved by one delta.
    old, new = _numbers(PETE_A), _numbers(out)
    assert len(old) == len(new)
    deltas = {n - o for o, n in zip(old, new, strict=True) if n != o}
    assert len(deltas) == 1 and 1 <= deltas.pop() <= 9


@pytest.mark.parametrize("seed", range(4))
def test_corrupted_carries_the_change_to_later_equal_numbers(seed):
    q = "Tom has 3 boxes of 4 pens."
    a = "3 * 4 = 12 pens. Then 12 + 12 makes 24.\nThe final answer is 24"  # one step result
    out = corrupt_response(q, a, random.Random(seed))
    d = int(re.search(r"= (\d+) pens", out).group(1)) - 12
    assert 1 <= d <= 9
    assert out == (f"3 * 4 = {12 + d} pens. Then {12 + d} + {12 + d} makes 24.\n"
                   f"The final answer is {24 + d}")


def test_corrupted_skips_records_without_numbers():
    rows = [*ROWS, {"instruction": "Is the sky blue?", "input": "", "output": "Yes.\nThe final "
                                                                             "answer is yes"}]
    res = build_variant(rows, "corrupted", seed=0)
    assert res.skipped == [3] and len(res.rows) == 3


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_write_rows_round_trips_in_the_input_format(tmp_path, suffix):
    p = write_rows(tmp_path / f"v{suffix}", ROWS)
    assert read_rows(p) == ROWS


def test_variant_paths_carry_labels(tmp_path):
    for kind in KINDS:
        p = variant_path(tmp_path, "cot_500/gsm8k_train_with_cot.json", kind)
        lab = infer_labels(p)
        if kind in ("irrelevant", "corrupted"):
            assert lab.response_kind == kind and lab.cot_level == "simplified"
        else:
            assert lab.cot_level == kind and lab.response_kind == "correct"


@pytest.mark.skipif(not GSM8K.is_file(), reason=f"shared data absent: {GSM8K}")
def test_all_kinds_on_real_gsm8k():
    rows = json.loads(GSM8K.read_text())[:60]
    for kind in KINDS:
        res = build_variant(rows, kind, seed=0)
        assert len(res.rows) + len(res.skipped) == len(rows)
        assert len(res.skipped) <= 3
    corrupted = build_variant(rows, "corrupted", seed=0)
    kept = [i for i in range(len(rows)) if i not in corrupted.skipped]
    for i, row in zip(kept, corrupted.rows, strict=True):
        assert split_steps(row["output"]).answer != split_steps(rows[i]["output"]).answer
