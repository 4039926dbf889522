# SPDX-License-Identifier: MIT
"""Summary tables of the non-spectra studies: toy accuracy and errors, dynamics,
surprisal and test-time compute. Tables in, tables out; missing columns become notes.

* ``accuracy`` - accuracy (fraction correct, 0..1) per task, training size, K and regime,
  one column per regime, and ``gap = cot - direct`` when both were evaluated.
* ``errors`` - failure counts per task, regime and K, one column per error kind (from the
  ``errors`` table, or counted from ``accuracy.error_kind`` of incorrect rows).
* ``dynamics`` - per regime: steps, final loss, mean gradient norm, spike count, mean cosine
  to the previous gradient, median and max of lambda_max, final distance from init; the
  CoT / direct ratio of median lambda_max when both regimes are present.
* ``surprisal`` - per condition: tokens, mean surprisal (bits), mean p_true, mean logit-grad
  norm and the fraction of tokens inside the Lemma 2 bounds.
* ``scale`` - the ``scale`` rows sorted by task, model, knob, K and budget.
"""

from __future__ import annotations

import pandas as pd

REGIME_ORDER = ("direct", "answer", "simplified", "cot")


def _need(table: str, df: pd.DataFrame, cols: tuple[str, ...], notes: list[str]) -> bool:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        notes.append(f"{table}: skipped, table lacks column(s) {', '.join(missing)} "
                     "(older format?)")
        return False
    return True


def _present(df: pd.DataFrame, cols: tuple[str, ...]) -> list[str]:
    return [c for c in cols if c in df.columns and df[c].notna().any()]


def accuracy_table(df: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    if not _need("accuracy", df, ("regime", "k", "correct"), notes):
        return pd.DataFrame()
    keys = _present(df, ("task", "split", "train_size"))
    d = df.assign(correct=df["correct"].astype(float))
    wide = d.pivot_table(index=keys + ["k"], columns="regime", values="correct",
                         aggfunc="mean")
    order = [r for r in REGIME_ORDER if r in wide.columns]
    wide = wide[order + sorted(c for c in wide.columns if c not in order)]
    if {"cot", "direct"} <= set(wide.columns):
        wide["gap"] = wide["cot"] - wide["direct"]
    wide["n"] = d.groupby(keys + ["k"]).size() // max(d["regime"].nunique(), 1)
    wide.columns.name = None
    return wide.reset_index()


def errors_table(tables: dict[str, pd.DataFrame], notes: list[str]) -> pd.DataFrame:
    if "errors" in tables:
        df = tables["errors"]
        if not _need("errors", df, ("regime", "k", "error_kind", "count"), notes):
            return pd.DataFrame()
    elif "accuracy" in tables and {"error_kind", "correct", "regime", "k"} <= set(
            tables["accuracy"].columns):
        acc = tables["accuracy"]
        wrong = acc[~acc["correct"].astype(bool)]
        keys = _present(wrong, ("task",))
        df = wrong.groupby(keys + ["regime", "k", "error_kind"]).size().rename(
            "count").reset_index()
    else:
        return pd.DataFrame()
    keys = _present(df, ("task",))
    if df.empty:
        return pd.DataFrame()
    wide = df.pivot_table(index=keys + ["regime", "k"], columns="error_kind", values="count",
                          aggfunc="sum", fill_value=0)
    wide.columns.name = None
    return wide.reset_index()


def dynamics_table(df: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    if not _need("dynamics", df, ("regime", "step", "loss"), notes):
        return pd.DataFrame()
    rows = []
    for regime, sub in df.sort_values("step").groupby("regime", sort=True):
        row: dict[str, object] = {"regime": regime, "steps": int(sub["step"].nunique()),
                                  "final_loss": float(sub["loss"].iloc[-1])}
        if "grad_norm" in sub:
            row["mean_grad_norm"] = float(sub["grad_norm"].mean())
        if "spike" in sub:
            row["spikes"] = int(sub["spike"].fillna(False).astype(bool).sum())
        if "cos_prev" in sub:
            row["mean_cos_prev"] = float(sub["cos_prev"].mean())
        if "lambda_max" in sub and sub["lambda_max"].notna().any():
            row["median_lambda_max"] = float(sub["lambda_max"].median())
            row["max_lambda_max"] = float(sub["lambda_max"].max())
        if "dist_init" in sub and sub["dist_init"].notna().any():
            row["final_dist_init"] = float(sub["dist_init"].dropna().iloc[-1])
        rows.append(row)
    out = pd.DataFrame(rows)
    if "median_lambda_max" in out and {"cot", "direct"} <= set(out["regime"]):
        lam = out.set_index("regime")["median_lambda_max"]
        notes.append(f"dynamics: median lambda_max ratio cot/direct = "
                     f"{lam['cot'] / lam['direct']:.3g}")
    return out


def surprisal_table(df: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    if not _need("surprisal", df, ("condition", "surprisal_bits"), notes):
        return pd.DataFrame()
    agg: dict[str, tuple[str, str]] = {"tokens": ("surprisal_bits", "size"),
                                       "mean_surprisal_bits": ("surprisal_bits", "mean")}
    for col, name in (("p_true", "mean_p_true"), ("logit_grad_norm", "mean_logit_grad_norm"),
                      ("lemma2_ok", "lemma2_ok_frac")):
        if col in df.columns:
            agg[name] = (col, "mean")
    d = df.assign(lemma2_ok=df["lemma2_ok"].astype(float)) if "lemma2_ok" in df else df
    return d.groupby("condition", sort=True).agg(**agg).reset_index()


def scale_table(df: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    if not _need("scale", df, ("knob", "accuracy"), notes):
        return pd.DataFrame()
    order = _present(df, ("task", "model", "knob", "k", "n", "compute_tokens"))
    cols = order + [c for c in ("accuracy", "pass_at_n", "compute_flops") if c in df.columns]
    return df[cols].sort_values(order, kind="stable").reset_index(drop=True)


def summarise(tables: dict[str, pd.DataFrame], notes: list[str]) -> dict[str, pd.DataFrame]:
    """Every summary the given tables allow, keyed by table name."""
    out: dict[str, pd.DataFrame] = {}
    if "accuracy" in tables:
        out["accuracy"] = accuracy_table(tables["accuracy"], notes)
    out["errors"] = errors_table(tables, notes)
    if "dynamics" in tables:
        out["dynamics"] = dynamics_table(tables["dynamics"], notes)
    if "surprisal" in tables:
        out["surprisal"] = surprisal_table(tables["surprisal"], notes)
    if "scale" in tables:
        out["scale"] = scale_table(tables["scale"], notes)
    return {k: v for k, v in out.items() if not v.empty}
