# SPDX-License-Identifier: MIT
"""The per-regime summary and the claims table against hand computations (plain Python
loops over the rows), including the answer-only control columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from thoughtgrad.report.dynamics_summary import CLAIMS, SUMMARY_COLUMNS, claims, summarize

NAN = math.nan


def dynamics_rows(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for regime, n in (("half", 7), ("cot", 5)):
        for step in range(n):
            nonfinite = regime == "half" and step == 3
            rows.append({
                "regime": regime, "step": step,
                "loss": NAN if nonfinite else float(rng.uniform(1, 3)),
                "grad_norm": math.inf if nonfinite else float(rng.uniform(0.5, 2)),
                "spike": bool(rng.integers(2)) if not nonfinite else None,
                "cos_prev": NAN if step == 0 else float(rng.uniform(-1, 1)),
                "lambda_max": float(rng.uniform(1, 9)) if step % 2 == 0 else NAN,
                "loss_answer": float(rng.uniform(2, 4)) if not nonfinite else NAN,
                "grad_norm_answer": float(rng.uniform(1, 3)) if not nonfinite else NAN,
                "spike_answer": bool(rng.integers(2)),
                "cos_prev_answer": NAN if step in (0, 4) else float(rng.uniform(-1, 1)),
                "lambda_max_answer": float(rng.uniform(2, 12)) if step % 2 == 0 else NAN,
                "dist_init": 0.1 * (step + 1),
                "status": "nonfinite" if nonfinite else
                ("ok; curvature_oom: x" if (regime, step) == ("cot", 2) else "ok"),
            })
    return pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # any row order


def hand(rows: list[dict], col: str, how: str) -> float:
    vals = [r[col] for r in sorted(rows, key=lambda r: r["step"])]
    if how == "count":
        return sum(1 for v in vals if v is True)
    finite = [v for v in vals if v is not None and math.isfinite(v)]
    if not finite:
        return NAN
    return finite[-1] if how == "last" else sum(finite) / len(finite)


def test_summarize_equals_a_hand_computation() -> None:
    df = dynamics_rows()
    got = summarize(df).set_index("regime")
    assert list(summarize(df).columns) == list(SUMMARY_COLUMNS)
    assert list(got.index) == list(dict.fromkeys(df["regime"]))
    spec = {"final_loss": ("loss", "last"), "grad_norm_mean": ("grad_norm", "mean"),
            "spikes": ("spike", "count"), "cos_prev_mean": ("cos_prev", "mean"),
            "lambda_max_mean": ("lambda_max", "mean"),
            "lambda_max_last": ("lambda_max", "last"),
            "final_loss_answer": ("loss_answer", "last"),
            "grad_norm_answer_mean": ("grad_norm_answer", "mean"),
            "spikes_answer": ("spike_answer", "count"),
            "cos_prev_answer_mean": ("cos_prev_answer", "mean"),
            "lambda_max_answer_mean": ("lambda_max_answer", "mean"),
            "lambda_max_answer_last": ("lambda_max_answer", "last"),
            "dist_init_final": ("dist_init", "last")}
    bad = []
    for regime in ("half", "cot"):
        rows = df[df.regime == regime].to_dict("records")
        for name, (col, how) in spec.items():
            want = hand(rows, col, how)
            if got.at[regime, name] != pytest.approx(want, rel=1e-12):
                bad.append((regime, name, got.at[regime, name], want))
    assert not bad, f"mismatching summary cells: {bad}"
    assert got.at["half", "steps"] == 7 and got.at["cot", "steps"] == 5
    assert got.at["half", "nonfinite_steps"] == 1 and got.at["cot", "nonfinite_steps"] == 0
    assert got.at["cot", "probe_failures"] == 1 and got.at["half", "probe_failures"] == 0


def test_claims_pair_each_claim_with_its_answer_only_control() -> None:
    summary = summarize(dynamics_rows(3))
    table = claims(summary)
    assert list(table.columns) == ["claim", "loss", "cot", "half", "ratio"]
    assert len(table) == 2 * len(CLAIMS)
    by = summary.set_index("regime")
    for full, answer in CLAIMS:
        for loss, col in (("full", full), ("answer", answer)):
            row = table[(table.claim == full) & (table.loss == loss)].iloc[0]
            cot, half = by.at["cot", col], by.at["half", col]
            assert (row.cot, row.half) == (cot, half)
            want = cot / half if half != 0 else NAN
            assert (math.isnan(row.ratio) and math.isnan(want)) or row.ratio == want
    assert claims(summary[summary.regime == "cot"]).empty


def test_summarize_tolerates_tables_without_the_control_columns() -> None:
    df = dynamics_rows().drop(columns=["loss_answer", "grad_norm_answer", "spike_answer",
                                       "cos_prev_answer", "lambda_max_answer"])
    got = summarize(df)
    assert got["grad_norm_answer_mean"].isna().all() and (got["spikes_answer"] == 0).all()
