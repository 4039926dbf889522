# SPDX-License-Identifier: MIT
"""Per-regime summaries of the ``dynamics`` table: seed 000's three claims, each also under
the answer-only length control. Tables in, tables out (pandas only, no torch), so the report
can import it.

The claims (CoT vs half the steps, seed 000's "Direct") and the columns they are read from:

=======================  ===========================  ================================
claim                    full training loss           answer-only loss (control)
=======================  ===========================  ================================
smaller gradients        ``grad_norm`` (pre-clip)      ``grad_norm_answer``
fewer spikes             ``spike``                     ``spike_answer``
coherent directions      ``cos_prev``                  ``cos_prev_answer``
flatter curvature        ``lambda_max``                ``lambda_max_answer``
=======================  ===========================  ================================

Means are over finite values only (unprobed steps are NaN; a non-finite step is counted in
``nonfinite_steps`` instead of poisoning the mean). Spike counts treat a missing flag as
no spike.
"""

from __future__ import annotations

import math

import pandas as pd

CLAIMS = (
    ("grad_norm_mean", "grad_norm_answer_mean"),
    ("spikes", "spikes_answer"),
    ("cos_prev_mean", "cos_prev_answer_mean"),
    ("lambda_max_mean", "lambda_max_answer_mean"),
)
"""(full-loss, answer-only) summary columns of each claim; the claim is named by the first."""

SUMMARY_COLUMNS = (
    "regime", "steps", "final_loss", "grad_norm_mean", "spikes", "cos_prev_mean",
    "lambda_max_mean", "lambda_max_last", "final_loss_answer", "grad_norm_answer_mean",
    "spikes_answer", "cos_prev_answer_mean", "lambda_max_answer_mean",
    "lambda_max_answer_last", "dist_init_final", "nonfinite_steps", "probe_failures")


def _finite(g: pd.DataFrame, col: str) -> pd.Series:
    if col not in g:
        return pd.Series(dtype=float)
    s = pd.to_numeric(g[col], errors="coerce").astype(float)
    return s[s.map(math.isfinite)]


def _mean(g: pd.DataFrame, col: str) -> float:
    s = _finite(g, col)
    return float(s.mean()) if len(s) else math.nan


def _last(g: pd.DataFrame, col: str) -> float:
    s = _finite(g, col)
    return float(s.iloc[-1]) if len(s) else math.nan


def _count(g: pd.DataFrame, col: str) -> int:
    if col not in g:
        return 0
    return int(g[col].map(lambda v: bool(v) if v is not None and v == v else False).sum())


def summarize(dynamics: pd.DataFrame) -> pd.DataFrame:
    """One row per regime (in order of first appearance) with :data:`SUMMARY_COLUMNS`.

    ``steps``: distinct steps; ``final_loss`` / ``final_loss_answer``: the last finite
    value (nats); ``*_mean``: mean over finite values; ``spikes`` / ``spikes_answer``:
    count of flagged steps; ``lambda_max_last``: the last probed value;
    ``dist_init_final``: the last distance from the initial weights; ``nonfinite_steps``:
    steps whose loss or gradient was NaN/inf; ``probe_failures``: steps whose status
    records a probe failure (``*_oom`` / ``*_error`` / ``*_nonfinite``).
    """
    out = []
    for regime, g in dynamics.groupby("regime", sort=False):
        g = g.sort_values("step")
        status = g["status"].fillna("ok").astype(str) if "status" in g else \
            pd.Series("ok", index=g.index)
        parts = status.str.split("; ")
        out.append({
            "regime": regime, "steps": int(g["step"].nunique()),
            "final_loss": _last(g, "loss"),
            "grad_norm_mean": _mean(g, "grad_norm"), "spikes": _count(g, "spike"),
            "cos_prev_mean": _mean(g, "cos_prev"),
            "lambda_max_mean": _mean(g, "lambda_max"),
            "lambda_max_last": _last(g, "lambda_max"),
            "final_loss_answer": _last(g, "loss_answer"),
            "grad_norm_answer_mean": _mean(g, "grad_norm_answer"),
            "spikes_answer": _count(g, "spike_answer"),
            "cos_prev_answer_mean": _mean(g, "cos_prev_answer"),
            "lambda_max_answer_mean": _mean(g, "lambda_max_answer"),
            "lambda_max_answer_last": _last(g, "lambda_max_answer"),
            "dist_init_final": _last(g, "dist_init"),
            "nonfinite_steps": int(parts.map(lambda p: "nonfinite" in p).sum()),
            "probe_failures": int(parts.map(lambda p: any(x not in ("ok", "nonfinite")
                                                          for x in p)).sum()),
        })
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))


def claims(summary: pd.DataFrame, *, numerator: str = "cot",
           denominator: str = "half") -> pd.DataFrame:
    """Seed 000's claims side by side: one row per (claim, loss) with the value of each of
    the two regimes and ``ratio = numerator / denominator`` (NaN when the denominator is 0
    or missing). ``loss`` is ``full`` (the training loss) or ``answer`` (the answer-only
    control). Empty when either regime is absent from ``summary``."""
    regimes = set(summary["regime"]) if "regime" in summary else set()
    cols = ["claim", "loss", numerator, denominator, "ratio"]
    if not {numerator, denominator} <= regimes:
        return pd.DataFrame(columns=cols)
    by = summary.set_index("regime")
    rows = []
    for name, answer_name in CLAIMS:
        for loss, col in (("full", name), ("answer", answer_name)):
            a, b = float(by.at[numerator, col]), float(by.at[denominator, col])
            ratio = a / b if b != 0 and math.isfinite(b) else math.nan
            rows.append({"claim": name, "loss": loss, numerator: a, denominator: b,
                         "ratio": ratio})
    return pd.DataFrame(rows, columns=cols)
