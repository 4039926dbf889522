# SPDX-License-Identifier: MIT
"""The toy lab's accuracy tables from ``accuracy`` rows (pandas only, no torch), so the
writer (:mod:`thoughtgrad.experiments.toy`) and the report share one definition."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

REGIME_ORDER = ("direct", "answer", "half", "simplified", "cot")
"""Regime columns and rows in this order (less supervised reasoning first); others after,
sorted."""


def _present(df: pd.DataFrame, cols: Sequence[str]) -> list[str]:
    return [c for c in cols if c in df.columns and df[c].notna().any()]


def accuracy_table(acc: pd.DataFrame, *, keys: Sequence[str] = ("task", "train_size")
                   ) -> pd.DataFrame:
    """Accuracy per (keys, k) with one column per regime and the CoT-direct gap.

    Input: rows of the ``accuracy`` table (columns regime, k, correct, the ``keys`` that
    are present, and ``exact`` when present). Output columns: the keys, ``k``, one
    answer-accuracy column per regime (fraction correct, in :data:`REGIME_ORDER`), ``n``
    (problems per regime), ``gap`` (cot - direct) when both were evaluated, and
    ``<regime>_exact`` (exact-match rate of the whole response) where defined.
    """
    index = [*_present(acc, keys), "k"]
    d = acc.assign(correct=acc["correct"].astype(float))
    wide = d.pivot_table(index=index, columns="regime", values="correct", aggfunc="mean")
    order = [r for r in REGIME_ORDER if r in wide.columns]
    wide = wide[order + sorted(c for c in wide.columns if c not in order)]
    wide["n"] = d.groupby(index).size() // max(d["regime"].nunique(), 1)
    if {"direct", "cot"} <= set(wide.columns):
        wide["gap"] = wide["cot"] - wide["direct"]
    wide.columns.name = None
    wide = wide.reset_index()
    if "exact" in acc.columns and acc["exact"].notna().any():
        exact = (acc.dropna(subset=["exact"]).assign(exact=lambda x: x["exact"].astype(float))
                 .groupby([*index, "regime"])["exact"].mean().unstack("regime"))
        exact.columns = [f"{c}_exact" for c in exact.columns]
        wide = wide.merge(exact.reset_index(), on=index, how="left")
    return wide


def error_counts(acc: pd.DataFrame) -> pd.DataFrame:
    """Counts of every error kind per (task, train_size, regime, k); ``ok`` excluded."""
    keys = [c for c in ("task", "train_size") if c in acc.columns]
    bad = acc[acc["error_kind"] != "ok"]
    return (bad.groupby([*keys, "regime", "k", "error_kind"]).size()
            .rename("count").reset_index())
