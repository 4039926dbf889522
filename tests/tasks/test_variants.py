# SPDX-License-Identifier: MIT
"""Variant builders: derangement, none / simplified / detailed, half-steps, records without
a corruptible equation, file I/O, all kinds on the real gsm8k records."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from variant_fixtures import GSM8K, GSM8K_GPT4O, GSM8K_NONE, ROWS, checked, needs_shared

from thoughtgrad.errors import UserError
from thoughtgrad.tasks.answers import NUMBER
from thoughtgrad.tasks.records import infer_labels, read_rows
from thoughtgrad.tasks.steps import split_steps
from thoughtgrad.tasks.variants import (
    KINDS,
    build_variant,
    derangement,
    variant_path,
    write_rows,
)


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


@needs_shared
def test_none_of_real_gpt4o_responses_is_the_bare_answer():
    rows = json.loads(GSM8K_GPT4O.read_text())[:100]
    bare = [r["output"] for r in json.loads(GSM8K_NONE.read_text())[:100]]
    res = build_variant(rows, "none")
    assert res.skipped == []
    got = [r["output"] for r in res.rows]
    assert all(NUMBER.fullmatch(g) for g in got)  # a number, never a sentence
    agree = sum(float(g.replace(",", "")) == float(b) for g, b in zip(got, bare, strict=True))
    assert agree >= 90  # GPT-4o's own answer; it differs from the gold one a few times


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


@needs_shared
def test_all_kinds_on_real_gsm8k():
    for path, max_skipped in ((GSM8K, 10), (GSM8K_GPT4O, 20)):
        rows = json.loads(path.read_text())[:60]
        for kind in KINDS:
            res = build_variant(rows, kind, seed=0)
            assert len(res.rows) + len(res.skipped) == len(rows)
            assert len(res.skipped) <= (max_skipped if kind == "corrupted" else 0), kind
        corrupted = build_variant(rows, "corrupted", seed=0)
        kept = [i for i in range(len(rows)) if i not in corrupted.skipped]
        for i, row in zip(kept, corrupted.rows, strict=True):
            prompt = rows[i]["instruction"]
            before = split_steps(rows[i]["output"], prompt).answer
            assert split_steps(row["output"], prompt).answer != before
            # only numbers change: the text around them is the same
            assert NUMBER.sub("#", row["output"]) == NUMBER.sub("#", rows[i]["output"])
        if path == GSM8K:  # plain rationales: exactly one wrong equation, the rest recomputed
            for i, row in zip(kept, corrupted.rows, strict=True):
                wrong = [e for e, ok in checked(row["output"]) if not ok]
                assert len(wrong) <= 1 + sum(not ok for _, ok in checked(rows[i]["output"]))
