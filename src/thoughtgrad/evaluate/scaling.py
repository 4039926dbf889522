# SPDX-License-Identifier: MIT
"""The test-time scale study (seed 004): what more inference compute buys, per K.

For one trained toy model and the held-out problems of each K:

* **greedy** - one greedy response per problem;
* **samples** - ``N = max(samples)`` sampled responses per problem, drawn once in one
  batch; for every budget ``n`` in ``samples``, the accuracy of the majority vote over
  the *first* n samples (:func:`~thoughtgrad.evaluate.voting.majority_vote`: unparsed
  answers abstain, ties go to the answer seen first, a problem with no vote is wrong)
  and pass@n from the c correct among all N (the unbiased estimator,
  :func:`~thoughtgrad.evaluate.voting.pass_at_k`), averaged over problems;
* **loops** - greedy responses of a looped gpt_mini run at r loops.

Every row carries the mean compute per problem spent to reach it: forward token
positions and FLOPs (see :mod:`thoughtgrad.evaluate.sampling`), summed over the samples
used (the first n for a budget of n). Rows are the ``scale`` table of
``docs/architecture.md`` without the labels (task, model, ...) the caller adds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from thoughtgrad.errors import UserError
from thoughtgrad.evaluate.sampling import SampleSet, check_sampling, sample_responses
from thoughtgrad.evaluate.voting import majority_vote, pass_at_k
from thoughtgrad.tasks.toy import Problem, ToyTask

SCALE_COLUMNS = ("k", "knob", "n", "accuracy", "pass_at_n", "compute_tokens", "compute_flops",
                 "n_problems")


@dataclass(frozen=True)
class SampleConfig:
    """Sampling for the scale study: budgets ``samples`` (N = their maximum is drawn once),
    temperature, optional top-k / top-p, and the generator seed."""

    samples: tuple[int, ...] = (1, 2, 4, 8, 16)
    """sample budgets n; N = the largest is drawn once per problem"""
    temperature: float = 0.8
    """sampling temperature (> 0)"""
    top_k: int | None = None
    """keep the k most likely tokens"""
    top_p: float | None = None
    """nucleus mass in (0, 1]"""
    seed: int = 0
    """seed of the sampling generator"""

    def __post_init__(self) -> None:
        if not self.samples:
            raise UserError("samples: give at least one budget, e.g. 1,2,4,8")
        for n in self.samples:
            if n < 1:
                raise UserError(f"samples must be >= 1, got {n}")
        check_sampling(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        if self.temperature == 0.0:
            raise UserError("temperature 0 is greedy: every sample would be the same; "
                            "use a temperature > 0 for majority vote and pass@n")

    @property
    def n_draw(self) -> int:
        return max(self.samples)


# -- pure maths on answers --------------------------------------------------------------------
def majority_correct(answers: Sequence[Sequence[int | None]], targets: Sequence[int],
                     n: int) -> np.ndarray:
    """Per problem, whether the majority vote over its first ``n`` answers is the target."""
    return np.array([majority_vote(list(a[:n])) == t for a, t in zip(answers, targets,
                                                                       strict=True)])


def pass_at_n(answers: Sequence[Sequence[int | None]], targets: Sequence[int],
              n: int) -> np.ndarray:
    """Per problem, unbiased pass@n from the count of correct answers among all of them."""
    out = []
    for a, t in zip(answers, targets, strict=True):
        c = sum(x == t for x in a)
        out.append(pass_at_k(len(a), c, n))
    return np.array(out, dtype=float)


def vote_rows(k: int, sampled: SampleSet, targets: Sequence[int],
              budgets: Sequence[int]) -> list[dict]:
    """``samples`` rows for one K: majority@n, pass@n and mean compute of n samples."""
    rows = []
    for n in sorted(set(budgets)):
        if n > sampled.positions.shape[1]:
            raise ValueError(f"budget {n} exceeds the {sampled.positions.shape[1]} samples drawn")
        rows.append({
            "k": k, "knob": "samples", "n": n,
            "accuracy": float(majority_correct(sampled.answers, targets, n).mean()),
            "pass_at_n": float(pass_at_n(sampled.answers, targets, n).mean()),
            "compute_tokens": float(sampled.positions[:, :n].sum(1).mean()),
            "compute_flops": float(sampled.flops[:, :n].sum(1).mean()),
            "n_problems": len(targets)})
    return rows


def greedy_row(k: int, decoded: SampleSet, targets: Sequence[int], *, knob: str,
               n: int) -> dict:
    """One row for a greedy decode (one sample per problem): pass@1 equals accuracy."""
    correct = np.array([a[0] == t for a, t in zip(decoded.answers, targets, strict=True)])
    acc = float(correct.mean())
    return {"k": k, "knob": knob, "n": n, "accuracy": acc, "pass_at_n": acc,
            "compute_tokens": float(decoded.positions[:, 0].mean()),
            "compute_flops": float(decoded.flops[:, 0].mean()), "n_problems": len(targets)}


# -- studies over a model ---------------------------------------------------------------------
def greedy_study(model: nn.Module, task: ToyTask, eval_sets: Mapping[int, Sequence[Problem]],
                 style: str, *, knob: str = "greedy", n: int = 1, n_loops: int | None = None,
                 device: torch.device | str = "cpu") -> pd.DataFrame:
    """One greedy row per K, labelled ``knob`` with budget ``n`` (e.g. layers L)."""
    rows = []
    for k, problems in sorted(eval_sets.items()):
        dec = sample_responses(model, task, problems, style, n_samples=1, temperature=0.0,
                               n_loops=n_loops, device=device)
        rows.append(greedy_row(k, dec, [task.answer(p) for p in problems], knob=knob, n=n))
    return pd.DataFrame(rows, columns=list(SCALE_COLUMNS))


def sample_study(model: nn.Module, task: ToyTask, eval_sets: Mapping[int, Sequence[Problem]],
                 style: str, cfg: SampleConfig, *, n_loops: int | None = None,
                 device: torch.device | str = "cpu") -> pd.DataFrame:
    """Majority vote and pass@n rows for every K and budget; one seeded draw of N per K.

    The generator is seeded with ``cfg.seed + k`` for each K, so one K's samples do not
    depend on which other Ks are evaluated.
    """
    rows = []
    for k, problems in sorted(eval_sets.items()):
        gen = torch.Generator(device=device).manual_seed(cfg.seed + k)
        s = sample_responses(model, task, problems, style, n_samples=cfg.n_draw,
                             temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                             generator=gen, n_loops=n_loops, device=device)
        rows.extend(vote_rows(k, s, [task.answer(p) for p in problems], cfg.samples))
    return pd.DataFrame(rows, columns=list(SCALE_COLUMNS))


def loop_study(model: nn.Module, task: ToyTask, eval_sets: Mapping[int, Sequence[Problem]],
               style: str, loops: Sequence[int], *,
               device: torch.device | str = "cpu") -> pd.DataFrame:
    """Greedy accuracy of a looped gpt_mini at every loop count r in ``loops`` (knob
    ``loops``, n = r)."""
    for r in loops:
        if r < 1:
            raise UserError(f"loops (r) must be >= 1, got {r}")
    parts = [greedy_study(model, task, eval_sets, style, knob="loops", n=r, n_loops=r,
                          device=device) for r in loops]
    return pd.concat(parts, ignore_index=True)


def scale_study(model: nn.Module, task: ToyTask, eval_sets: Mapping[int, Sequence[Problem]],
                style: str, cfg: SampleConfig, *, device: torch.device | str = "cpu"
                ) -> pd.DataFrame:
    """Greedy rows plus majority-vote / pass@n rows for every K (``toy scale``)."""
    return pd.concat([greedy_study(model, task, eval_sets, style, device=device),
                      sample_study(model, task, eval_sets, style, cfg, device=device)],
                     ignore_index=True)


def label_scale_rows(df: pd.DataFrame, labels: Mapping[str, object], *, temperature: float,
                     train_ks: Sequence[int]) -> pd.DataFrame:
    """One model's ``scale`` rows with their labels: ``labels`` become the leading columns
    (in order); ``temperature`` is the sampling temperature on ``samples`` rows and 0 on
    greedy and loop rows; ``split`` is ``in_distribution`` for a K in ``train_ks``, else
    ``out_of_distribution``. Returns a new frame; ``df`` is left unchanged."""
    df = df.copy()
    for i, (name, value) in enumerate(labels.items()):
        df.insert(i, name, value)
    df["temperature"] = [temperature if kn == "samples" else 0.0 for kn in df["knob"]]
    df["split"] = ["in_distribution" if k in train_ks else "out_of_distribution"
                   for k in df["k"]]
    return df
