# SPDX-License-Identifier: MIT
"""Variant builders: derangement, step splitting (plain and markdown responses), half-steps,
corrupted answers recomputed through later equations (checked by an independent evaluator),
file I/O, all kinds on the real gsm8k records."""

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
GSM8K_GPT4O = SHARED / "cot_500" / "gsm8k_train_with_cot_gpt4o.json"
GSM8K_NONE = SHARED / "cot_500" / "gsm8k_train_no_cot.json"
needs_shared = pytest.mark.skipif(not GSM8K_GPT4O.is_file(),
                                  reason=f"shared data absent: {GSM8K_GPT4O}")

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


_NUM = r"\d+(?:\.\d+)?"
_EXPR = rf"{_NUM}(?: [-+*/] (?:\({_NUM} / {_NUM}\)|{_NUM}))+"
SIMPLE_EQ = re.compile(rf"(?<![\d.])({_EXPR}(?: = {_EXPR})*) = ({_NUM})(?![\d]| [-+*/] )")


def _checked(text: str) -> list[tuple[str, bool]]:
    """Every plain ``a op b ... [= c op d ...] = r`` of ``text`` and whether its arithmetic
    holds to the shown rounding of ``r``: an oracle independent of the module's
    LaTeX-aware parser."""
    out = []
    for m in SIMPLE_EQ.finditer(text):
        shown = m.group(2)
        tol = 0.5 * 10 ** -(len(shown.split(".")[1]) if "." in shown else 0) + 1e-9
        ok = all(abs(eval(e) - float(shown)) <= tol  # noqa: S307 - digits and + - * / only
                 for e in m.group(1).split(" = "))
        out.append((m.group(0), ok))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_corrupted_changes_one_result_and_recomputes_the_rest(seed):
    out = corrupt_response(PETE_Q, PETE_A, random.Random(seed))
    assert out is not None and out != PETE_A
    assert all(ok for _, ok in _checked(PETE_A))
    checks = _checked(out)
    assert len(checks) == len(_checked(PETE_A))
    wrong = [i for i, (_, ok) in enumerate(checks) if not ok]
    assert len(wrong) == 1  # the corrupted step; every later one recomputed correctly
    assert checks[:wrong[0]] == _checked(PETE_A)[:wrong[0]]  # nothing before it changes
    last_result = float(SIMPLE_EQ.findall(out)[-1][1])
    assert float(split_steps(out).answer) == last_result != 20  # carried to the answer
    # the problem's own numbers stay where they are used (a value computed from the
    # change is recomputed even when it happens to equal one of them, e.g. 90 - 80 = 10)
    assert "2 * 20 = " in out and "4 * 10 = " in out and "He needs 90 - " in out


@pytest.mark.parametrize("seed", range(8))
def test_corrupted_recomputes_later_equations_that_use_the_result(seed):
    q = "Tom has 3 boxes of 4 pens."
    a = "3 * 4 = 12 pens. Then 12 + 12 = 24 pens.\nThe final answer is 24"
    out = corrupt_response(q, a, random.Random(seed))
    first = int(re.search(r"3 \* 4 = (\d+)", out).group(1))
    if first != 12:  # the first step was corrupted: the sum and the answer follow it
        d = first - 12
        assert 1 <= d <= 9
        assert out == (f"3 * 4 = {12 + d} pens. Then {12 + d} + {12 + d} = {24 + 2 * d} pens."
                       f"\nThe final answer is {24 + 2 * d}")
    else:  # the sum was corrupted: only it and the answer change
        total = int(re.search(r"12 \+ 12 = (\d+)", out).group(1))
        assert 1 <= total - 24 <= 9 and out.endswith(f"The final answer is {total}")


def test_corrupted_prefers_an_unambiguous_result():
    """Two steps both give 40: changing one of them would make ``40 + 40`` ambiguous, so
    the corrupted step is one whose result no other equation shares."""
    for seed in range(10):
        out = corrupt_response(PETE_Q, PETE_A, random.Random(seed))
        assert "2 * 20 = 40" in out and "4 * 10 = 40" in out and "40 + 40 = " in out


@needs_shared
def test_markdown_steps_of_a_real_gpt4o_response():
    rows = json.loads(GSM8K_GPT4O.read_text())
    pete = rows[0]
    s = split_steps(pete["output"], pete["instruction"])
    assert s.preamble.startswith("To determine the number of bottles")
    assert [st.split("\n", 1)[0] for st in s.steps] == [
        "1. **Calculate the total amount of money Pete currently has.**",
        "2. **Determine the remaining amount Pete needs to pay off.**",
        "3. **Calculate the equivalent number of bottles needed to make up the remaining $10.**"]
    assert "40 + 40 = 80" in s.steps[0] and "\\frac{1000" in s.steps[2]  # equations kept
    assert s.answer == "20" and s.answer_line.startswith("Therefore, Pete needs to return 20")
    simp = build_variant([pete], "simplified").rows[0]["output"]
    assert "1. **Calculate" in simp and "3. **Calculate" in simp and "2. **Determine" not in simp
    assert "40 + 40 = 80" in simp and "= 20 \\text{ bottles}" in simp  # bodies, not headers
    assert simp.endswith(s.answer_line)


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


@needs_shared
def test_corrupted_real_gpt4o_response_is_recomputed_through_to_the_answer():
    pete = json.loads(GSM8K_GPT4O.read_text())[0]
    for seed in range(6):
        out = build_variant([pete], "corrupted", seed=seed).rows[0]["output"]
        s80 = int(re.search(r"40 \+ 40 = (\d+)", out).group(1))
        left, s10 = map(int, re.search(r"90 - (\d+) = (\d+)", out).groups())
        cents = re.search(r"(\d+) \\times 100 = (\d+) \\text\{ cents\}", out).groups()
        frac = re.search(r"\\frac\{(\d+) \\text\{ cents\}\}\{50 [^}]*\}\} = (\d+)", out)
        answer = int(split_steps(out, pete["instruction"]).answer)
        steps = [s80 == 80, left == s80 and s10 == 90 - left,
                 int(cents[1]) == 100 * int(cents[0]) and int(cents[0]) == s10,
                 int(frac.group(1)) == int(cents[1]) and int(frac.group(2)) * 50 == int(
                     frac.group(1))]
        assert sum(not ok for ok in steps) == 1, (seed, steps)  # one wrong step, rest follow
        assert answer == int(frac.group(2)) != 20
        assert "two $20 bills and four $10 bills" in out and "is $90" in out  # problem kept


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
                wrong = [e for e, ok in _checked(row["output"]) if not ok]
                assert len(wrong) <= 1 + sum(not ok for _, ok in _checked(rows[i]["output"]))
