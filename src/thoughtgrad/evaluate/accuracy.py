# SPDX-License-Identifier: MIT
"""Per-K accuracy of a toy model: greedy decoding, answer extraction, error taxonomy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from thoughtgrad.evaluate.decoding import generate
from thoughtgrad.tasks.toy import (
    TOKENIZER,
    CharTokenizer,
    Problem,
    ToyTask,
    classify_error,
    extract_answer,
    response,
)

EVAL_BATCH = 512
RANDOM_STYLES = ("half",)
"""Response styles with no single gold text for a held-out problem."""


def max_response_chars(task: ToyTask, k: int, style: str) -> int:
    """A length cap for decoding: twice the longest gold response for K, at least 16."""
    worst = Problem(tuple([9] * k), tuple([task.operators[0]] * (k - 1)))
    return max(16, 2 * len(response(task, worst, style)))


@torch.no_grad()
def decode_problems(model: nn.Module, task: ToyTask, problems: Sequence[Problem], style: str,
                    *, device: torch.device | str = "cpu", tok: CharTokenizer = TOKENIZER,
                    temperature: float = 0.0, generator: torch.Generator | None = None,
                    n_loops: int | None = None, batch_size: int = EVAL_BATCH) -> list[str]:
    """Decoded responses (up to and including ``#``) for problems that share one K."""
    if not problems:
        return []
    ks = {p.k for p in problems}
    if len(ks) != 1:
        raise ValueError("decode_problems takes problems of a single K")
    cap = max_response_chars(task, ks.pop(), style)
    out: list[str] = []
    for i in range(0, len(problems), batch_size):
        chunk = problems[i: i + batch_size]
        ids = torch.tensor([tok.encode(p.prompt()) for p in chunk], device=device)
        new = generate(model, ids, max_new_tokens=cap, stop_id=tok.eos_id, pad_id=tok.pad_id,
                       temperature=temperature, generator=generator, n_loops=n_loops)
        for row in new.tolist():
            text = tok.decode(row)
            out.append(text[: text.index("#") + 1] if "#" in text else text.rstrip("."))
    return out


def evaluate_accuracy(model: nn.Module, task: ToyTask, eval_sets: Mapping[int, Sequence[Problem]],
                      style: str, *, device: torch.device | str = "cpu",
                      n_loops: int | None = None) -> pd.DataFrame:
    """One row per problem: ``k, problem, target, prediction, answer, correct, exact,
    error_kind``.

    ``correct``: the extracted final answer (:func:`~thoughtgrad.tasks.toy.extract_answer`,
    strict grammar) equals the target. ``exact``: the whole response equals the gold text
    of ``style`` (every trace step right, nothing extra); ``<NA>`` for the ``half`` style,
    whose dropped steps are a random draw per problem. ``error_kind`` names the first
    thing wrong with a response whose answer is wrong (``ok`` otherwise).
    """
    rows = []
    for k, problems in sorted(eval_sets.items()):
        preds = decode_problems(model, task, problems, style, device=device, n_loops=n_loops)
        for p, text in zip(problems, preds, strict=True):
            ans = extract_answer(text)
            rows.append({
                "k": k, "problem": p.prompt(), "target": task.answer(p), "prediction": text,
                "answer": ans, "correct": ans == task.answer(p),
                "exact": None if style in RANDOM_STYLES else text == response(task, p, style),
                "error_kind": classify_error(task, p, text, style),
            })
    df = pd.DataFrame(rows)
    df["answer"] = df["answer"].astype("Int64")
    df["exact"] = df["exact"].astype("boolean")
    return df
