# SPDX-License-Identifier: MIT
"""Corrupted responses: one result changed and every later equation recomputed (checked by
an independent evaluator), on hand-written and real GPT-4o responses."""

from __future__ import annotations

import json
import random
import re

import pytest
from variant_fixtures import GSM8K_GPT4O, PETE_A, PETE_Q, SIMPLE_EQ, checked, needs_shared

from thoughtgrad.tasks.corruption import corrupt_response
from thoughtgrad.tasks.steps import split_steps
from thoughtgrad.tasks.variants import build_variant


@pytest.mark.parametrize("seed", range(6))
def test_corrupted_changes_one_result_and_recomputes_the_rest(seed):
    out = corrupt_response(PETE_Q, PETE_A, random.Random(seed))
    assert out is not None and out != PETE_A
    assert all(ok for _, ok in checked(PETE_A))
    checks = checked(out)
    assert len(checks) == len(checked(PETE_A))
    wrong = [i for i, (_, ok) in enumerate(checks) if not ok]
    assert len(wrong) == 1  # the corrupted step; every later one recomputed correctly
    assert checks[:wrong[0]] == checked(PETE_A)[:wrong[0]]  # nothing before it changes
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
