# SPDX-License-Identifier: MIT
"""Response variants of step-by-step records: the paper's conditions and two controls.

A step-by-step response is split by :func:`~thoughtgrad.tasks.steps.split_steps` into its
reasoning steps and its final-answer line (around the answer found by
:func:`~thoughtgrad.tasks.answers.answer_span`); a step is a sentence, a line, or a markdown
item or section with its bullets and equations. From it:

==============  ========================================================================
``none``        the bare final answer (fast thinking, the paper's None CoT)
``simplified``  every other step (the 1st, 3rd, ...) and the answer line
``detailed``    the response unchanged: all steps and the answer line
``half_steps``  a seeded random half of the steps removed per sample, order and answer
                line kept (the "Direct" regime of the Gradient-of-Thought seed)
``irrelevant``  responses permuted across instructions by a seeded derangement (no
                record keeps its own response): the paper's construction
``corrupted``   the response keeps its own problem's numbers, but one equation's result
                is changed and the change carried through: every later equation that
                uses it is recomputed, and so on, up to the final answer (see
                :func:`~thoughtgrad.tasks.corruption.corrupt_response`): wrong for
                reasoning reasons, not because it answers another problem
==============  ========================================================================

Variants keep every other field of a record and the record order, so the same
instructions line up across variant files.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtgrad.errors import UserError
from thoughtgrad.tasks.answers import OPTION_LETTER
from thoughtgrad.tasks.corruption import corrupt_response
from thoughtgrad.tasks.steps import split_steps

KINDS: tuple[str, ...] = ("none", "simplified", "detailed", "half_steps", "irrelevant",
                          "corrupted")


@dataclass(frozen=True)
class VariantConfig:
    """How variants of a data file are built (:func:`build_variant`'s options)."""

    seed: int = 0
    """seed of the half-steps, irrelevant and corrupted choices"""
    prompt_field: str = "instruction"
    """field holding the prompt"""
    response_field: str = "output"
    """field holding the response"""


# -- the six builders -------------------------------------------------------------------
def none_response(response: str, prompt: str | None = None) -> str:
    """The bare final answer (an option letter as ``(X)``); ``ValueError`` when the
    response never states one."""
    answer = split_steps(response, prompt).answer
    if not answer:
        raise ValueError("the response never states its final answer")
    letter = OPTION_LETTER.fullmatch(answer) or OPTION_LETTER.fullmatch(f"option {answer}")
    return f"({next(g for g in letter.groups() if g)})" if letter else answer


def simplified_response(response: str, prompt: str | None = None) -> str:
    s = split_steps(response, prompt)
    return s.join(s.steps[::2])


def half_steps_response(response: str, rng: random.Random, prompt: str | None = None) -> str:
    """Remove ``floor(n / 2)`` of the ``n`` steps, chosen uniformly by ``rng``."""
    s = split_steps(response, prompt)
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


@dataclass(frozen=True)
class VariantResult:
    """Variant rows (same fields as the input) and the indices of records left out."""

    rows: list[dict[str, Any]]
    skipped: list[int]


def build_variant(rows: Sequence[dict[str, Any]], kind: str, *, seed: int = 0,
                  prompt_field: str = "instruction", response_field: str = "output"
                  ) -> VariantResult:
    """Rows of one variant ``kind``; other fields are copied unchanged.

    ``corrupted`` leaves out (and lists in ``skipped``) records whose answer no equation
    change reaches, ``none`` records whose response never states its answer; every other
    kind keeps every record. Randomness depends on ``seed`` and the record
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
        prompt = str(row.get(prompt_field, "") or "")
        if row.get("input"):
            prompt += "\n" + str(row["input"])
        if kind == "none":
            try:
                new = none_response(resp, prompt)
            except ValueError:
                skipped.append(i)
                continue
        elif kind == "simplified":
            new = simplified_response(resp, prompt)
        elif kind == "detailed":
            new = resp
        elif kind == "half_steps":
            new = half_steps_response(resp, rng, prompt)
        else:
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
