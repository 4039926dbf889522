# SPDX-License-Identifier: MIT
"""Toy task texts, traces, splits, answer extraction and the error taxonomy."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thoughtgrad.errors import UserError
from thoughtgrad.tasks.tokens import IGNORE_INDEX
from thoughtgrad.tasks.toy import (
    TOKENIZER,
    VOCAB,
    Problem,
    check_k,
    classify_error,
    encode_example,
    extract_answer,
    get_task,
    make_split,
    response,
)

ADD = get_task("addition")
FOLD = get_task("fold")


def test_seed_examples_exact() -> None:
    p = Problem((3, 4, 5, 6), ("+", "+", "+"))
    assert p.prompt() == "<3+4+5+6>"
    assert response(ADD, p, "answer") == "18#"
    assert response(ADD, p, "cot") == "{3+4=7;7+5=12;12+6=18}18#"
    assert response(ADD, p, "simplified") == "{3+4=7;12+6=18}18#"
    q = Problem((3, 4, 5, 6), ("+", "*", "-"))
    assert q.prompt() == "<3+4*5-6>"
    assert response(FOLD, q, "cot") == "{3+4=7;7*5=5;5-6=9}9#"


@given(st.text(alphabet=VOCAB, max_size=40))
def test_tokenizer_round_trip(text: str) -> None:
    assert TOKENIZER.decode(TOKENIZER.encode(text)) == text


def test_tokenizer_rejects_unknown_character() -> None:
    with pytest.raises(UserError, match="not in the vocabulary"):
        TOKENIZER.encode("<3+a>")


def _python_fold(p: Problem) -> int:
    """An independent left fold mod 10 written from the task's definition."""
    acc = p.digits[0]
    for op, d in zip(p.ops, p.digits[1:], strict=True):
        acc = eval(f"({acc}){op}({d})") % 10  # noqa: S307 - digits and + - * only
    return acc


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12))
def test_traces_match_python_arithmetic(seed: int, k: int) -> None:
    rng = random.Random(seed)
    for task, truth in ((ADD, lambda p: sum(p.digits)), (FOLD, _python_fold)):
        p = task.draw(rng, k)
        text = response(task, p, "cot")
        assert text.endswith(f"}}{truth(p)}#")
        steps = text[1: text.index("}")].split(";") if k > 1 else []
        assert len(steps) == k - 1
        acc = p.digits[0]
        for step, op, d in zip(steps, p.ops, p.digits[1:], strict=True):
            lhs, rhs = step.split("=")
            assert lhs == f"{acc}{op}{d}"
            value = eval(lhs)  # noqa: S307
            acc = value % 10 if task is FOLD else value
            assert int(rhs) == acc
        assert extract_answer(text) == truth(p) == task.answer(p)


def test_half_steps_seeded_and_keep_answer() -> None:
    p = Problem((1, 2, 3, 4, 5, 6), ("+",) * 5)
    a = response(ADD, p, "half", seed=3)
    assert a == response(ADD, p, "half", seed=3)
    assert a.endswith("}21#") and a.count("=") == 5 - 5 // 2


def test_split_is_by_problem_and_covers_ood_k() -> None:
    split = make_split(ADD, train_size=3000, train_ks=(2, 3, 4, 5, 6),
                       eval_ks=(2, 3, 4, 5, 6, 7, 8), eval_per_k=50, seed=0)
    held = {p for ps in split.eval.values() for p in ps}
    assert not held & set(split.train)
    assert sorted(split.eval) == [2, 3, 4, 5, 6, 7, 8]
    assert {p.k for p in split.train} == {2, 3, 4, 5, 6}
    assert len(split.eval[2]) == 20  # a fifth of the 100 K=2 problems
    assert len(split.train) == 3000


@pytest.mark.parametrize("k", [0, 21, -1])
def test_k_out_of_range(k: int) -> None:
    with pytest.raises(UserError, match=r"outside 1\.\.20"):
        check_k(k)


@pytest.mark.parametrize(("text", "expected"), [
    ("18#", 18), ("{3+4=7}7#", 7), ("{3+4=7;7+5=12}12#junk", 12), ("18", None), ("#", None),
    ("{3+4=7;7+5=12#", None), ("1a#", None), ("{}#", None), ("", None), ("{3+4=7}}7#", None),
    ("{{3+4=7}7#", None), ("x{3+4=7}7#", None), ("7}#", None), ("07#", None), ("0#", 0),
    ("{3+4=7}07#", None), ("-3#", None), ("9999999#", None), ("180#", 180),
])
def test_extract_answer_malformed(text: str, expected: int | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(("text", "kind"), [
    ("{3+4=7;7+5=12;12+6=18}18#", "ok"),
    ("{3+4=7;7+5=12;12+6=18}18", "format:no_end"),
    ("18#", "ok"),
    ("17#", "format:no_trace"),
    ("{3+4=7;7+5=12;12+6=18", "format:no_end"),
    ("{3+4=7;7+5=12;12+6=18#", "format:unclosed"),
    ("{3+4=7;7+5=12}12#", "format:missing_step"),
    ("{3+4=7;7+5=12;12+6=18;18+1=19}19#", "format:extra_step"),
    ("{3+4=7;7+5=;12+6=18}1#", "format:bad_step"),
    ("{3+4=7;7+5=13;13+6=19}19#", "arithmetic:step"),
    ("{3+4=7;7+6=13;13+6=19}19#", "copy:operand"),
    ("{3+4=7;7+5=12;12+6=18}81#", "copy:answer"),
    ("{3+4=7;7+5=12;12+6=18}#", "format:no_answer"),
])
def test_error_taxonomy_cot(text: str, kind: str) -> None:
    p = Problem((3, 4, 5, 6), ("+", "+", "+"))
    assert classify_error(ADD, p, text, "cot") == kind


def test_error_taxonomy_direct() -> None:
    p = Problem((3, 4, 5, 6), ("+", "+", "+"))
    assert classify_error(ADD, p, "18#", "answer") == "ok"
    assert classify_error(ADD, p, "19#", "answer") == "arithmetic:answer"
    assert classify_error(ADD, p, "x#", "answer") == "format:no_answer"
    assert classify_error(ADD, p, "19", "answer") == "format:no_end"


def test_prompt_is_masked_response_is_not() -> None:
    ids, labels = encode_example("<3+4>", "7#")
    assert labels[:5] == [IGNORE_INDEX] * 5
    assert labels[5:] == ids[5:] == TOKENIZER.encode("7#")
