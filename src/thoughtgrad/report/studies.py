# SPDX-License-Identifier: MIT
"""Summary tables of the non-spectra studies: toy accuracy and errors, dynamics,
surprisal and test-time compute. Tables in, tables out; missing columns become notes.

* ``accuracy`` - accuracy (fraction correct, 0..1) per task, training size, K and regime,
  one column per regime, and ``gap = cot - direct`` when both were evaluated.
* ``errors`` - failure counts per task, regime and K, one column per error kind (from the
  ``errors`` table, or counted from ``accuracy.error_kind`` of incorrect rows).
* ``dynamics`` - per regime, :func:`thoughtgrad.report.dynamics_summary.summarize`: steps, final
  loss, mean gradient norm, spike count, mean cosine to the previous gradient, mean and last
  lambda_max, final distance from init, each beside its answer-only control
  (``*_answer``), and the non-finite steps and probe failures; columns no run measured
  are left out.
* ``dynamics_claims`` - seed 000's claims, CoT vs half (its "Direct"), under the full and the
  answer-only loss (:func:`thoughtgrad.report.dynamics_summary.claims`), when both regimes are
  present.
* ``surprisal`` - per condition: tokens, mean surprisal (bits), mean p_true, mean logit-grad
  norm and the fraction of tokens inside the Lemma 2 bounds.
* ``scale`` - the ``scale`` rows sorted by task, model, knob, K and budget.
* ``scale_by_k`` - per task and K, the accuracy of every knob curve (:func:`knob_curves`)
  at its largest budget: the knobs side by side.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pandas as pd

from thoughtgrad.evaluate.tables import REGIME_ORDER
from thoughtgrad.evaluate.tables import accuracy_table as toy_accuracy
from thoughtgrad.report.dynamics_summary import claims, summarize


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
    """:func:`thoughtgrad.evaluate.tables.accuracy_table` per task, split and training
    size, or a note when the rows lack its columns."""
    if not _need("accuracy", df, ("regime", "k", "correct"), notes):
        return pd.DataFrame()
    return toy_accuracy(df, keys=("task", "split", "train_size"))


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


def dynamics_tables(df: pd.DataFrame, notes: list[str]) -> dict[str, pd.DataFrame]:
    """``dynamics`` (one row per regime, in :data:`REGIME_ORDER`; all-NaN columns left out)
    and ``dynamics_claims`` (empty unless both ``cot`` and ``half`` are present), both
    from one :func:`~thoughtgrad.report.dynamics_summary.summarize` of the rows. Runs without the
    answer-only control (no ``grad_norm_answer``) show no answer-only spike count or claims
    rather than zeros. Rows of several studies (a ``study`` column, :func:`label_studies`:
    a toy model and a trained LM, or one model under several seeds) are summarised per
    study, with a ``study`` column first, never pooled."""
    if not _need("dynamics", df, ("regime", "step", "loss"), notes):
        return {}
    studies = list(dict.fromkeys(df["study"])) if "study" in df else []
    if len(studies) < 2:
        shown, table = _dynamics_of_study(df)
        return {"dynamics": shown, "dynamics_claims": table}
    parts = [_dynamics_of_study(df[df["study"] == r]) for r in studies]
    return {name: pd.concat([t.assign(study=r)[["study", *t.columns]] for r, t in
                             zip(studies, (p[i] for p in parts), strict=True)],
                            ignore_index=True)
            for i, name in enumerate(("dynamics", "dynamics_claims"))}


STUDY_FREE = ("regime", "device", "checkpoint_every", "offload")
"""Settings that may differ between the regimes of one dynamics study (``thoughtgrad train``
accepts them changed in one run directory)."""


def label_studies(dyn: pd.DataFrame, manifests: Mapping[str, Mapping[str, Any]]
                  ) -> pd.DataFrame:
    """``dyn`` with a ``study`` column: rows whose runs trained the same model on the same
    data with the same settings (their manifest's ``dynamics_<regime>`` config, all but
    :data:`STUDY_FREE`) are one study, wherever they were written (the demo writes each
    regime to its own directory). The label is the model and the seed, with ``#2``, ``#3``
    for studies that differ elsewhere; a run without a config is a study of its own."""
    if "run" not in dyn or "regime" not in dyn or dyn.empty:
        return dyn

    def strip(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: strip(x) for k, x in v.items() if k not in STUDY_FREE}
        return v

    keys: dict[tuple[str, str], str] = {}
    names: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for run, regime in dict.fromkeys(zip(dyn["run"], dyn["regime"], strict=True)):
        entry = (manifests.get(run) or {}).get(f"dynamics_{regime}") or {}
        cfg = entry.get("config") if isinstance(entry, Mapping) else None
        if not isinstance(cfg, Mapping):
            keys[(run, regime)] = key = f"run:{run}"
            names.setdefault(key, str(run))
            continue
        keys[(run, regime)] = key = json.dumps(strip(cfg), sort_keys=True, default=str)
        if key not in names:
            seed = (cfg.get("train") or {}).get("seed")
            label = f"{cfg.get('model')} (seed {seed})"
            seen[label] += 1
            names[key] = label if seen[label] == 1 else f"{label} #{seen[label]}"
    study = [names[keys[(r, g)]] for r, g in zip(dyn["run"], dyn["regime"], strict=True)]
    return dyn.assign(study=study)


def _dynamics_of_study(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One study's ``dynamics`` summary and ``dynamics_claims`` (see :func:`dynamics_tables`)."""
    summary = summarize(df)
    rank = {r: i for i, r in enumerate(REGIME_ORDER)}
    shown = summary.sort_values("regime", key=lambda s: s.map(lambda r: rank.get(r, len(rank))),
                                kind="stable").dropna(axis=1, how="all")
    table = claims(summary)
    answered = "grad_norm_answer" in df and \
        pd.to_numeric(df["grad_norm_answer"], errors="coerce").notna().any()
    if not answered:
        shown = shown.drop(columns=["spikes_answer"], errors="ignore")
        table = table[table["loss"] != "answer"]
    return shown.reset_index(drop=True), table.reset_index(drop=True)


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
    cols = order + [c for c in ("regime", "n_layer", "accuracy", "pass_at_n", "compute_flops",
                                "split") if c in df.columns]
    return df[cols].sort_values(order, kind="stable").reset_index(drop=True)


BUDGET_NAMES = {"parameters": "L", "samples": "n", "loops": "r"}
"""The budget letter of each knob: layers L, samples n (majority vote), loop count r."""


def knob_curves(df: pd.DataFrame) -> pd.DataFrame:
    """The ``scale`` rows with a ``curve`` and a ``budget`` label and a ``budget_rank``.

    A knob whose budget is one value per model (``parameters``: one model per L,
    ``tokens``, ``greedy``) is one curve across its models when they are distinct points
    (distinct L); a knob whose budget varies within one model (``samples``: n, ``loops``:
    r), or two models at one point, is one curve per model. ``budget``
    names a point (``L=4``, ``n=8``, ``r=3``, or the model); ``budget_rank`` orders the
    points of a curve (the budget, else the model's layer count).
    """
    d = df.copy()
    if "model" not in d.columns:
        d["model"] = ""
    d["model"] = d["model"].astype(str)
    keys = [c for c in ("task", "knob", "model") if c in d.columns]
    knob = [c for c in ("task", "knob") if c in d.columns]
    layers = d["n_layer"] if "n_layer" in d.columns else d["n"]
    letter = d["knob"].map(BUDGET_NAMES)
    varies = d.groupby(keys)["n"].transform("nunique") > 1
    rank = d["n"].where(varies | letter.notna(), layers)
    # one curve across models only when each model is one distinct point of the budget
    models = d.groupby(knob)["model"].transform("nunique")
    points = rank.groupby([d[c] for c in knob]).transform("nunique")
    own = (varies | (points < models)) & (models > 1)
    d["curve"] = d["knob"].astype(str)
    d.loc[own, "curve"] = d.loc[own, "knob"].astype(str) + " " + d.loc[own, "model"]
    d["budget"] = [f"{lt}={int(n)}" if isinstance(lt, str) else
                   (f"L={int(nl)}" if pd.notna(nl) else m)
                   for lt, n, nl, m in zip(letter, d["n"], layers, d["model"], strict=True)]
    d["budget_rank"] = rank
    return d


def scale_by_k(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (fraction) per task and K (rows) of each knob curve at its largest budget
    (columns ``"<curve> [<budget>]"``)."""
    d = knob_curves(df)
    index = _present(d, ("task", "k"))
    group = [c for c in ("task", "curve") if c in d.columns]
    top = d[d["budget_rank"] == d.groupby(group)["budget_rank"].transform("max")]
    top = top.assign(column=top["curve"] + " [" + top["budget"] + "]")
    wide = top.pivot_table(index=index, columns="column", values="accuracy", aggfunc="mean")
    order = top.drop_duplicates("column").sort_values(["knob", "column"])["column"]
    wide = wide[[c for c in order if c in wide.columns]]
    wide.columns.name = None
    return wide.reset_index()


def summarise(tables: dict[str, pd.DataFrame], notes: list[str]) -> dict[str, pd.DataFrame]:
    """Every summary the given tables allow, keyed by table name."""
    out: dict[str, pd.DataFrame] = {}
    if "accuracy" in tables:
        out["accuracy"] = accuracy_table(tables["accuracy"], notes)
    out["errors"] = errors_table(tables, notes)
    if "dynamics" in tables:
        out.update(dynamics_tables(tables["dynamics"], notes))
    if "surprisal" in tables:
        out["surprisal"] = surprisal_table(tables["surprisal"], notes)
    if "scale" in tables:
        out["scale"] = scale_table(tables["scale"], notes)
        if not out["scale"].empty and "n" in tables["scale"].columns:
            out["scale_by_k"] = scale_by_k(tables["scale"])
    return {k: v for k, v in out.items() if not v.empty}
