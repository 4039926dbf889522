# SPDX-License-Identifier: MIT
"""One claims table across all five seeds, for the top of the report.

Each row: the seed, the claim in the seed's words, what these runs measured, under which
control, the verdict and the report section it comes from. Built from tables the
comparison already computed (tables in, table out):

* 001 / 002 (layer spectra): the rows of :func:`thoughtgrad.report.claims.claims_table`,
  one per claim, the weakest verdict over models;
* 000 (training dynamics): ``dynamics_claims`` (ratio CoT / other regime, full loss and the
  answer-only control) - one training run per regime, so no interval: the verdict compares
  the two regimes' point values (:data:`DYNAMICS_DIRECTIONS`);
* 003 (toy CoT lab): the raw ``accuracy`` rows at the largest K (bootstrap intervals of
  each regime's accuracy);
* 004 (test-time compute): the ``scale`` rows, accuracy at the largest vs the smallest
  budget of the sampling and looping knobs (point values: one evaluation).

A study whose tables are absent gives "not measured in these runs".
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from thoughtgrad.report import stats
from thoughtgrad.report.claims import FAILS, HOLDS, NOT_MEASURABLE, weakest

NOT_IN_RUNS = "not measured in these runs"
HOLDS_ONLY_FULL = "holds only with the full-response loss"
"""Seed 000's length control is the answer-only loss: a dynamics claim that holds with the
full response's loss and not with the answer's holds only with the full-response loss."""

DYNAMICS_DIRECTIONS: dict[str, tuple[str, str]] = {
    "grad_norm_mean": ("smaller gradients under CoT supervision", "below"),
    "spikes": ("fewer gradient spikes under CoT supervision", "below"),
    "cos_prev_mean": ("more coherent consecutive gradients under CoT", "above"),
    "lambda_max_mean": ("flatter curvature (smaller lambda_max) under CoT", "below"),
}
"""Seed 000's claims: the summary column and whether the CoT value must be below or above
the other regime's for the claim to hold (a point rule: one run per regime gives no
interval; equal values, such as no spikes in either, are not measurable)."""

COLUMNS = ("seed", "claim", "seed's words", "measured", "control", "verdict", "section")


def _row(seed: str, claim: str, words: str, measured: str, control: str, verdict: str,
         section: str) -> dict[str, str]:
    return dict(zip(COLUMNS, (seed, claim, words, measured, control, verdict, section),
                    strict=True))


def spectra_rows(claims: pd.DataFrame | None) -> list[dict[str, str]]:
    from thoughtgrad.report.claims import CLAIMS, CONTROL_TITLES

    if claims is None or claims.empty:
        return [_row(c.seed, c.key, c.words, NOT_IN_RUNS, "-", NOT_MEASURABLE, "spectra")
                for c in CLAIMS]
    out = []
    for c in CLAIMS:
        sub = claims[claims["claim"] == c.key]
        measured = "; ".join(t if t == m else f"{m}: {t}" for m, t in zip(sub["model"],
                                                        sub[CONTROL_TITLES["mean"]],
                                                        strict=True))
        control = "; ".join(sorted({w for w in sub["why"] if w})) or "mean loss only"
        out.append(_row(c.seed, c.key, c.words, measured or NOT_IN_RUNS,
                        f"mean loss; sum loss: {'; '.join(sub[CONTROL_TITLES['sum']])}; "
                        f"{control}", weakest(list(sub["verdict"])), "claims-spectra"))
    return out


def dynamics_rows(table: pd.DataFrame | None) -> list[dict[str, str]]:
    """One row per claim; with several studies (a ``study`` column) each study's values are
    named and the verdict is the weakest study's."""
    if table is None or table.empty or "ratio" not in table:
        return [_row("000", k, words, NOT_IN_RUNS, "-", NOT_MEASURABLE, "dynamics")
                for k, (words, _) in DYNAMICS_DIRECTIONS.items()]
    studies = list(dict.fromkeys(table["study"])) if "study" in table else [None]
    regimes = [c for c in table.columns if c not in ("study", "claim", "loss", "ratio")]
    order = (FAILS, HOLDS_ONLY_FULL, HOLDS)
    out = []
    for key, (words, side) in DYNAMICS_DIRECTIONS.items():
        def ok(a: float, b: float, side: str = side) -> bool | None:
            """The claim's direction read on the two regimes' values themselves: a ratio
            says nothing when the other regime's value is 0 (no spikes) or negative (a
            mean cosine below 0)."""
            if not (math.isfinite(a) and math.isfinite(b)) or a == b:
                return None
            return a < b if side == "below" else a > b

        verdicts, texts = [], []
        for study in studies:
            sub = table if study is None else table[table["study"] == study]
            sub = sub[sub["claim"] == key]
            got = {str(r["loss"]): (float(r[regimes[0]]), float(r[regimes[1]]),
                                    float(r["ratio"])) for _, r in sub.iterrows()}
            full, answer = (ok(*got[k][:2]) if k in got else None for k in ("full", "answer"))
            if full is None:
                verdicts.append(NOT_MEASURABLE)
            elif not full:
                verdicts.append(FAILS)
            elif answer is False:
                verdicts.append(HOLDS_ONLY_FULL)
            else:
                verdicts.append(HOLDS)
            text = ", ".join(f"{loss} loss {' / '.join(regimes[:2])} = {a:.3g} / {b:.3g}"
                             + (f" (ratio {r:.3g})" if math.isfinite(r) and min(a, b) > 0
                                else "")
                             for loss, (a, b, r) in got.items())
            if text:
                texts.append(text if study is None else f"{study}: {text}")
        measured = [v for v in verdicts if v in order]
        verdict = min(measured, key=order.index) if measured else NOT_MEASURABLE
        out.append(_row("000", key, words, "; ".join(texts) or NOT_IN_RUNS,
                        "full loss; answer-only loss (length control); no interval",
                        verdict, "dynamics"))
    return out


def toy_rows(accuracy: pd.DataFrame | None, *, seed: int = 0) -> list[dict[str, str]]:
    words = ("a fixed-depth transformer solves K-step problems only when it gets to write "
             "K tokens to think with")
    if accuracy is None or not {"regime", "k", "correct"} <= set(accuracy.columns) or \
            not {"cot", "direct"} <= set(accuracy["regime"]):
        return [_row("003", "cot-beats-direct", words, NOT_IN_RUNS, "-", NOT_MEASURABLE,
                     "toy")]
    top = int(accuracy["k"].max())
    at = accuracy[accuracy["k"] == top]
    figs = {}
    for regime in ("cot", "direct"):
        x = at.loc[at["regime"] == regime, "correct"].astype(float).to_numpy()
        figs[regime] = (*stats.bootstrap_mean_ci(x, seed=seed), x.size) if x.size else None
    if figs["cot"] is None or figs["direct"] is None or \
            not all(np.isfinite(figs[r][1]) for r in figs):
        verdict = NOT_MEASURABLE
    else:
        verdict = HOLDS if figs["cot"][1] > figs["direct"][2] else FAILS
    measured = "; ".join(f"{r} accuracy at K={top}: {m:.3g} [{lo:.3g}, {hi:.3g}] n={n}"
                         for r, f in figs.items() if f is not None for m, lo, hi, n in [f])
    return [_row("003", "cot-beats-direct", words, measured, "same loop and model; only the "
                 "response string differs (holds when CoT's interval lies above direct's)",
                 verdict, "toy")]


def scale_rows(scale: pd.DataFrame | None) -> list[dict[str, str]]:
    knobs = {"samples": "majority vote over more sampled traces raises accuracy",
             "loops": "running a looped block more times at test time raises accuracy"}
    if scale is None or not {"knob", "n", "accuracy"} <= set(scale.columns):
        return [_row("004", k, w, NOT_IN_RUNS, "-", NOT_MEASURABLE, "scale")
                for k, w in knobs.items()]
    out = []
    for knob, words in knobs.items():
        d = scale[scale["knob"] == knob]
        keys = [c for c in ("task", "model", "k") if c in d.columns]
        gains = []
        for _, g in (d.groupby(keys) if keys else [((), d)]):
            if g["n"].nunique() > 1:
                lo_n, hi_n = g["n"].min(), g["n"].max()
                gains.append(float(g.loc[g["n"] == hi_n, "accuracy"].mean()
                                   - g.loc[g["n"] == lo_n, "accuracy"].mean()))
        if not gains:
            out.append(_row("004", knob, words, NOT_IN_RUNS, "-", NOT_MEASURABLE, "scale"))
            continue
        mean = float(np.mean(gains))
        out.append(_row("004", knob, words,
                        f"mean accuracy gain, largest vs smallest budget: {mean:+.3g} over "
                        f"{len(gains)} (task, model, K)", "one evaluation; no interval",
                        HOLDS if mean > 0 else FAILS, "scale"))
    return out


def claims_across_seeds(tables: Mapping[str, pd.DataFrame], raw: Mapping[str, pd.DataFrame]
                        ) -> pd.DataFrame:
    """The report's opening table: ``tables`` are the comparison's (``claims``,
    ``dynamics_claims``), ``raw`` the runs' own tables (``accuracy``, ``scale``)."""
    rows = [*spectra_rows(tables.get("claims")), *dynamics_rows(tables.get("dynamics_claims")),
            *toy_rows(raw.get("accuracy")), *scale_rows(raw.get("scale"))]
    return pd.DataFrame(rows, columns=list(COLUMNS))
