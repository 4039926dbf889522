# SPDX-License-Identifier: MIT
"""Consensus and coverage over sampled answers (seed 004): majority vote and pass@k.

Majority vote (self-consistency, as in Minerva) returns the most frequent parsed answer
among a problem's samples. pass@k is the probability that at least one of k samples
drawn without replacement from n generated samples, c of them correct, is correct: the
unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on
Code"), ``1 - C(n-c, k) / C(n, k)``, computed in the numerically stable product form
``1 - prod_{i=n-c+1}^{n} (1 - k / i)`` so no binomial coefficient is ever formed.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from numbers import Integral
from typing import TypeVar

import numpy as np

from thoughtgrad.errors import UserError

A = TypeVar("A", bound=Hashable)


def majority_vote(answers: Sequence[A | None]) -> A | None:
    """The most frequent answer; ties go to the tied answer that appears first in the list.

    ``None`` entries (responses whose answer could not be parsed) do not vote. Returns
    ``None`` for an empty list or one that holds only ``None``.
    """
    counts: dict[A, int] = {}
    first: dict[A, int] = {}
    for i, a in enumerate(answers):
        if a is None:
            continue
        counts[a] = counts.get(a, 0) + 1
        first.setdefault(a, i)
    if not counts:
        return None
    return min(counts, key=lambda a: (-counts[a], first[a]))


def pass_at_k(n: Integral, c: Integral, k: Integral) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021).

    Equals ``1 - C(n-c, k) / C(n, k)``: the chance that a uniformly random k-subset of
    the n samples holds at least one correct one. Exactly 1.0 when ``n - c < k`` and 0.0
    when ``c == 0``. Any integer type is accepted (``int``, ``numpy.int64``, ...: every
    ``numbers.Integral``); ``bool`` and floats (even ``3.0``) are refused. Raises
    :class:`UserError` (one line) unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    values = []
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, Integral):
            raise UserError(f"pass_at_k: {name} must be an integer, got {v!r} "
                            f"({type(v).__name__})")
        values.append(int(v))
    n, c, k = values
    if n < 1:
        raise UserError(f"pass_at_k: n (samples drawn) must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise UserError(f"pass_at_k: c (correct samples) must be in 0..n={n}, got {c}")
    if not 1 <= k <= n:
        raise UserError(f"pass_at_k: k must be in 1..n={n}, got {k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss
