# SPDX-License-Identifier: MIT
"""Response variants of step-by-step records: the paper's conditions and two controls.

A step-by-step response is split by :func:`split_steps` into its steps (lines, or
sentences when the reasoning is one paragraph) and its final-answer line (found by
:func:`~thoughtgrad.tasks.encode.answer_span`). From it:

==============  ========================================================================
``none``        the bare answer (fast thinking, the paper's None CoT)
``simplified``  every other step (the 1st, 3rd, ...) and the answer line
``detailed``    the response unchanged: all steps and the answer line
``half_steps``  a seeded random half of the steps removed per sample, order and answer
                line kept (the "Direct" regime of the Gradient-of-Thought seed)
``irrelevant``  responses permuted across instructions by a seeded derangement (no
                record keeps its own response): the paper's construction
``corrupted``   the response keeps its own problem's numbers, but one step's result is
                changed and the change carried to later equal numbers and to the final
                answer: wrong for reasoning reasons, not because it answers another problem
==============  ========================================================================

Variants keep every other field of a record and the record order, so the same
instructions line up across variant files.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtgrad.errors import UserError
from thoughtgrad.tasks.encode import answer_span

KINDS: tuple[str, ...] = ("none", "simplified", "detailed", "half_steps", "irrelevant",
                          "corrupted")

NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])"
                    r"|(?<![\w.,])\d+(?:\.\d+)?(?![\w]|[.,]\d)")
"""A plain decimal number (``40``, ``0.5``, ``1,200``) not glued to letters or digits."""

STEP_RESULT = re.compile(r"=\s*\$?\s*(" + NUMBER.pattern + ")")
"""A number right after ``=`` (an optional ``$`` between): a step's result."""

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")

MAX_DELTA = 9
"""A corrupted result is shifted by a seeded integer in ``1..MAX_DELTA``."""


@dataclass(frozen=True)
class Steps:
    """A response split into reasoning steps and its final-answer line.

    ``sep`` rejoins the steps (``"\\n"`` for line steps, ``" "`` for sentences);
    ``answer`` is the bare answer inside ``answer_line``.
    """

    steps: list[str]
    sep: str
    answer_line: str
    answer: str

    def join(self, steps: Sequence[str]) -> str:
        body = self.sep.join(steps)
        gap = "\n\n" if self.sep == "\n\n" else "\n"
        return f"{body}{gap}{self.answer_line}" if body else self.answer_line


def split_steps(response: str) -> Steps:
    """Split at the final answer; the text from the answer's line on is the answer line.

    Steps are the blank-line-separated blocks of the reasoning when it has several (keeps
    multi-line formulas whole), else its lines, else its sentences.
    """
    span = answer_span(response)
    if span is None:
        raise ValueError("empty response")
    line_start = response.rfind("\n", 0, span[0]) + 1
    body, answer_line = response[:line_start], response[line_start:].strip()
    answer = response[span[0]:span[1]]
    blocks = [b.strip("\n").rstrip() for b in re.split(r"\n\s*\n", body) if b.strip()]
    if len(blocks) > 1:
        return Steps(blocks, "\n\n", answer_line, answer)
    lines = [ln.rstrip() for ln in body.splitlines() if ln.strip()]
    if len(lines) > 1:
        return Steps(lines, "\n", answer_line, answer)
    sentences = SENTENCE_END.split(lines[0].strip()) if lines else []
    return Steps(sentences, " ", answer_line, answer)


# -- the six builders -------------------------------------------------------------------
def none_response(response: str) -> str:
    return split_steps(response).answer


def simplified_response(response: str) -> str:
    s = split_steps(response)
    return s.join(s.steps[::2])


def half_steps_response(response: str, rng: random.Random) -> str:
    """Remove ``floor(n / 2)`` of the ``n`` steps, chosen uniformly by ``rng``."""
    s = split_steps(response)
    n = len(s.steps)
    drop = set(rng.sample(range(n), n // 2))
    return s.join([st for i, st in enumerate(s.steps) if i not in drop])


def derangement(n: int, rng: random.Random) -> list[int]:
    """A uniformly random permutation of ``range(n)`` with no fixed point (rejection
    sampling: a uniform permutation is a derangement with probability about 1/e)."""
    if n < 2:
        raise UserError(f"irrelevant responses need at least 2 records, got {n}")
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(p != i for i, p in enumerate(perm)):
            return perm


def _value(token: str) -> float:
    return float(token.replace(",", ""))


def _format(value: float, like: str) -> str:
    decimals = len(like.split(".")[1]) if "." in like else 0
    text = f"{value:,.{decimals}f}" if "," in like else f"{value:.{decimals}f}"
    return text


def corrupt_response(prompt: str, response: str, rng: random.Random) -> str | None:
    """Change one step's result and carry the change through; ``None`` when impossible.

    The changed number is a step result (after ``=``) whose value is not one of the
    problem's numbers (else any such number of the response). It is shifted by a seeded
    ``1..MAX_DELTA``; later numbers equal to it change the same way; if the final
    answer's first number did not change with them it is shifted by the same amount.
    Numbers of the problem are never touched outside the answer. ``None`` when there is
    no number to change or the answer holds no number.
    """
    problem = {_value(m.group()) for m in NUMBER.finditer(prompt)}
    span = answer_span(response)
    if span is None:
        return None
    answer_nums = [m for m in NUMBER.finditer(response, span[0], span[1])]
    if not answer_nums:
        return None
    body_end = response.rfind("\n", 0, span[0]) + 1
    results = [(m.start(1), m.group(1)) for m in STEP_RESULT.finditer(response, 0, body_end)
               if _value(m.group(1)) not in problem]
    if not results:
        results = [(m.start(), m.group()) for m in NUMBER.finditer(response, 0, body_end)
                   if _value(m.group()) not in problem]
    if not results:
        return None
    start, token = results[rng.randrange(len(results))]
    old = _value(token)
    delta = rng.randint(1, MAX_DELTA)
    edits: dict[int, tuple[int, str]] = {}
    for m in NUMBER.finditer(response, start):
        if _value(m.group()) == old:
            edits[m.start()] = (m.end(), _format(old + delta, m.group()))
    first = answer_nums[0]
    if first.start() not in edits:
        edits[first.start()] = (first.end(), _format(_value(first.group()) + delta, first.group()))
    out, pos = [], 0
    for s in sorted(edits):
        end, text = edits[s]
        out.append(response[pos:s])
        out.append(text)
        pos = end
    out.append(response[pos:])
    return "".join(out)


@dataclass(frozen=True)
class VariantResult:
    """Variant rows (same fields as the input) and the indices of records left out."""

    rows: list[dict[str, Any]]
    skipped: list[int]


def build_variant(rows: Sequence[dict[str, Any]], kind: str, *, seed: int = 0,
                  prompt_field: str = "instruction", response_field: str = "output"
                  ) -> VariantResult:
    """Rows of one variant ``kind``; other fields are copied unchanged.

    ``corrupted`` leaves out (and lists in ``skipped``) records with no number to change;
    every other kind keeps every record. Randomness depends on ``seed`` and the record
    index only.
    """
    kind = kind.replace("-", "_")
    if kind not in KINDS:
        raise UserError(f"unknown variant kind {kind!r}; choose one of {', '.join(KINDS)}")
    responses = [str(r[response_field]) for r in rows]
    out: list[dict[str, Any]] = []
    skipped: list[int] = []
    if kind == "irrelevant":
        perm = derangement(len(rows), random.Random(f"irrelevant:{seed}"))
        return VariantResult([{**r, response_field: responses[perm[i]]}
                              for i, r in enumerate(rows)], [])
    for i, (row, resp) in enumerate(zip(rows, responses, strict=True)):
        rng = random.Random(f"{kind}:{seed}:{i}")
        if kind == "none":
            new = none_response(resp)
        elif kind == "simplified":
            new = simplified_response(resp)
        elif kind == "detailed":
            new = resp
        elif kind == "half_steps":
            new = half_steps_response(resp, rng)
        else:
            prompt = str(row.get(prompt_field, "")) + "\n" + str(row.get("input", "") or "")
            new = corrupt_response(prompt, resp, rng)
            if new is None:
                skipped.append(i)
                continue
        out.append({**row, response_field: new})
    return VariantResult(out, skipped)


def variant_path(out_dir: str | os.PathLike[str], data: str | os.PathLike[str], kind: str
                 ) -> Path:
    """``<out_dir>/<stem>_<kind><suffix>``: a name whose labels ``records.infer_labels`` reads."""
    p = Path(data)
    return Path(out_dir) / f"{p.stem}_{kind.replace('-', '_')}{p.suffix}"


def write_rows(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> Path:
    """Write rows in the format named by the suffix (JSON array, JSONL or Parquet)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(list(rows)).to_parquet(p, index=False)
    elif suffix == ".jsonl":
        p.write_text("".join(json.dumps(_plain(r), ensure_ascii=False) + "\n" for r in rows),
                     encoding="utf-8")
    elif suffix == ".json":
        p.write_text(json.dumps([_plain(r) for r in rows], ensure_ascii=False, indent=2) + "\n",
                     encoding="utf-8")
    else:
        raise UserError(f"{p}: unknown output format {suffix!r}; use .json, .jsonl or .parquet")
    return p


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe values (Parquet rows may hold NaN or numpy scalars)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and math.isnan(v):
            v = None
        elif hasattr(v, "item") and callable(v.item):
            v = v.item()
        out[k] = v
    return out
