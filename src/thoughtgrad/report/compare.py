# SPDX-License-Identifier: MIT
"""Compare conditions across run directories: the Python API behind ``thoughtgrad compare``.

Reads tables only (never a model). :func:`~thoughtgrad.runs.load.load_runs` gathers
every known table of the given runs (a ``run`` column says where a row came from);
:func:`compare_runs` turns them into tidy DataFrames:

* ``spectra_curves`` - per condition, role, layer and metric: mean across samples and its
  95 % bootstrap interval (``--per-loss``: scale metrics divided by the sample loss).
* ``spectra_mad`` - MAD of each mean curve over all layers and early / middle / late thirds.
* ``spectra_reldiff`` - mean relative difference between CoT levels (and irrelevant vs
  correct), the layers where it is largest, and both curves' MAD; controls
  (``loss_reduction``, ``loss_span``, ``init``, ``model``) are grouping columns sorted
  innermost, so each contrast sits next to its controls.
* ``separation`` - how well a per-sample statistic (mean over layers of a metric, per role
  and over all roles) separates irrelevant (or corrupted) from correct: AUROC with a
  bootstrap interval and Cohen's d.
* ``top_samples`` - per condition, the samples whose gradients hit hardest (largest mean
  nuclear norm over their matrices), with prompt and response excerpts.
* ``spectra_failed`` - the failures still standing: the latest per sample, leaving out
  samples measured on a later attempt.
* ``accuracy``, ``errors``, ``dynamics``, ``surprisal``, ``scale`` summaries when present
  (see :mod:`thoughtgrad.report.studies`).

A missing table or column skips its section and adds a one-line note; nothing here raises
for a run that simply lacks a study.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from thoughtgrad.errors import UserError
from thoughtgrad.report import stats, studies
from thoughtgrad.report.grid_report import add_claims, expand_grids
from thoughtgrad.runs.load import SPECTRA_REQUIRED, Runs, load_runs
from thoughtgrad.tasks.records import dataset_stem

log = logging.getLogger(__name__)

CONTROL_KEYS = ("model", "init", "init_seed", "loss_reduction", "loss_span")
CONDITION_KEYS = ("dataset", "condition", "response_kind", "cot_level")
METRICS = ("nuclear", "ratio", "effective_rank")
SCALE_METRICS = ("nuclear", "sigma_max", "sigma_min", "frobenius")
COT_ORDER = ("none", "half_steps", "simplified", "detailed")
ROLE_ORDER = ("q", "k", "v", "o", "qkv", "gate", "up", "gate_up", "down")
COT_PAIRS = (("none", "detailed"), ("simplified", "detailed"), ("none", "simplified"))
KIND_PAIRS = (("irrelevant", "correct"), ("corrupted", "correct"))
MISSING = "n/a"  # label for a condition column a row does not carry
ALL_ROLES = "all"
TOP_SAMPLES = 5  # samples listed per condition in ``top_samples``


@dataclass(frozen=True)
class CompareConfig:
    """Options of a comparison; the defaults are the paper's analysis."""

    metrics: tuple[str, ...] = METRICS
    """spectra metrics to summarise, comma-separated"""
    per_loss: bool = False
    """divide scale metrics (nuclear, sigma_max, frobenius) by the sample's loss: the
    paper's 'regularized' nuclear norm"""
    n_boot: int = stats.N_BOOT
    """bootstrap resamples for every interval"""
    level: float = stats.LEVEL
    """confidence level of every interval"""
    seed: int = 0
    """bootstrap seed"""
    separation_metric: str = "nuclear"
    """metric whose mean over layers separates irrelevant from correct"""
    top_layers: int = 3
    """layers with the largest relative difference listed per contrast"""

    def __post_init__(self) -> None:
        if self.n_boot < 1:
            raise UserError(f"n_boot={self.n_boot}: must be >= 1")
        if not 0.0 < self.level < 1.0:
            raise UserError(f"level={self.level}: must be in (0, 1)")
        if not self.metrics:
            raise UserError("metrics: give at least one spectra metric")


@dataclass
class Comparison:
    """Everything a report shows: named tidy tables, per-run manifests and notes."""

    runs: Runs
    config: CompareConfig
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # condition columns of the spectra
    notes: list[str] = field(default_factory=list)
    section_notes: dict[str, list[str]] = field(default_factory=dict)
    """Lines opening a report section, by section id (``spectra``: what was measured)."""


# -- spectra ----------------------------------------------------------------------------------
def dataset_of(source: str) -> str:
    """The dataset a ``source`` label belongs to: its last path part without its CoT-level
    and response-kind suffixes, stripped repeatedly
    (``cot_500_wrong_answer_shuffle/gsm8k_train_with_cot`` and the variants file
    ``gsm8k_train_with_cot_gpt4o_detailed`` -> ``gsm8k_train``), so every variant of one
    dataset falls into one group."""
    return dataset_stem(str(source).rstrip("/").rsplit("/", 1)[-1])


def prepare_spectra(df: pd.DataFrame, cfg: CompareConfig, notes: list[str]
                    ) -> tuple[pd.DataFrame, list[str], list[str]] | None:
    """Check columns, label missing conditions, apply ``per_loss``.

    Returns ``(table, condition_keys, metric_columns)`` or ``None`` (with a note) when the
    table cannot be compared at all.
    """
    missing = [c for c in SPECTRA_REQUIRED if c not in df.columns]
    if missing:
        notes.append(f"spectra: skipped, table lacks required column(s) {', '.join(missing)} "
                     "(older format?)")
        return None
    df = df.copy()
    if "source" in df.columns:
        df["dataset"] = df["source"].astype(str).map(dataset_of).where(df["source"].notna())
    keys = []
    for col in CONTROL_KEYS + CONDITION_KEYS:
        if col in df.columns and df[col].notna().any():
            df[col] = df[col].astype(object).where(df[col].notna(), MISSING).astype(str)
            keys.append(col)
    if "condition" in keys and len(keys) > 1:
        # a label that only restates the other columns adds no group; keep it out of keys
        rest = [k for k in keys if k != "condition"]
        if df.groupby(rest)["condition"].nunique().max() <= 1:
            keys = rest
    absent = [c for c in ("cot_level", "response_kind") if c not in keys]
    if absent:
        notes.append(f"spectra: no {' / '.join(absent)} column; those contrasts are skipped")
    metrics = []
    for m in cfg.metrics:
        if m not in df.columns:
            notes.append(f"spectra: metric {m!r} not in the table; skipped")
            continue
        if cfg.per_loss and m in SCALE_METRICS:
            if "loss" not in df.columns:
                notes.append(f"spectra: --per-loss needs a 'loss' column; {m} left undivided")
                metrics.append(m)
                continue
            name = f"{m}/loss"
            loss = pd.to_numeric(df["loss"], errors="coerce")
            df[name] = pd.to_numeric(df[m], errors="coerce") / loss.where(loss > 0)
            metrics.append(name)
        else:
            metrics.append(m)
    if not metrics:
        notes.append("spectra: skipped, none of the requested metrics is in the table")
        return None
    df["layer"] = pd.to_numeric(df["layer"], errors="coerce")
    df = df[df["layer"].notna()]
    df["layer"] = df["layer"].astype(int)
    df["sample_id"] = df["sample_id"].astype(str)
    df["role"] = df["role"].astype(str)
    return df, keys, metrics


def _groups(df: pd.DataFrame, keys: list[str], *, level: bool = False):
    """Yield ``(values tuple, sub-frame)`` per group of ``keys`` (columns, or index levels
    with ``level=True``); one group with an empty tuple when there are no keys."""
    if not keys:
        yield (), df
        return
    grouped = df.groupby(level=keys, sort=True) if level else df.groupby(keys, sort=True)
    for vals, sub in grouped:
        yield (vals if isinstance(vals, tuple) else (vals,)), sub


def spectra_curves(df: pd.DataFrame, keys: list[str], metrics: list[str], cfg: CompareConfig,
                   notes: list[str]) -> pd.DataFrame:
    """Mean curve over layers with a bootstrap interval, per condition, role and metric.

    Several rows of one sample, layer and role (e.g. two parameters sharing a role) are
    averaged first; samples are then the bootstrap unit.
    """
    cell = df.groupby(keys + ["role", "sample_id", "layer"], sort=True)[metrics].mean()
    wide = cell.unstack("layer")  # rows (keys, role, sample); columns (metric, layer)
    rows = []
    single = []
    for vals, block in _groups(wide, keys + ["role"], level=True):
        for m in metrics:
            x = block[m]  # (S, L): samples x layers, NaN where a sample lacks a layer
            x = x.loc[:, x.notna().any(axis=0)]
            mean, lo, hi = stats.bootstrap_mean_ci_columns(
                x.to_numpy(), n_boot=cfg.n_boot, level=cfg.level, seed=cfg.seed)
            n = x.notna().sum(axis=0).to_numpy()
            base = dict(zip(keys + ["role"], vals, strict=True))
            rows.extend({**base, "metric": m, "layer": int(layer), "mean": mean[j],
                         "lo": lo[j], "hi": hi[j], "n": int(n[j])}
                        for j, layer in enumerate(x.columns))
            if n.size and n.max() < 2:
                single.append("/".join(str(v) for v in vals))
    if single:
        notes.append(f"spectra: {len(set(single))} condition/role group(s) have a single "
                     f"sample, so no interval (e.g. {sorted(set(single))[0]})")
    return pd.DataFrame(rows)


def spectra_mad(curves: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """MAD of every mean curve: all layers and the early / middle / late thirds."""
    rows = []
    for vals, sub in _groups(curves, keys + ["role", "metric"]):
        seg = stats.mad_segments(sub["layer"].to_numpy(), sub["mean"].to_numpy())
        rows.append({**dict(zip(keys + ["role", "metric"], vals, strict=True)),
                     "n_layers": int(sub["layer"].nunique()),
                     **{f"mad_{k}": v for k, v in seg.items()}})
    return pd.DataFrame(rows)


def spectra_reldiff(curves: pd.DataFrame, keys: list[str], cfg: CompareConfig) -> pd.DataFrame:
    """Relative difference ``(a - b) / |b|`` of curve pairs along ``cot_level`` and
    ``response_kind``, with both curves' MAD; controls are the innermost sort keys."""
    rows = []
    for factor, pairs in (("cot_level", COT_PAIRS), ("response_kind", KIND_PAIRS)):
        if factor not in keys:
            continue
        others = [k for k in keys if k != factor]
        wide = curves.pivot_table(index=others + ["role", "metric", "layer"], columns=factor,
                                  values="mean", aggfunc="mean")  # one column per level
        for a, b in pairs:
            if a not in wide.columns or b not in wide.columns:
                continue
            pair = wide[[a, b]].dropna()
            for vals, sub in _groups(pair, others + ["role", "metric"], level=True):
                layers = sub.index.get_level_values("layer").to_numpy()
                va, vb = sub[a].to_numpy(), sub[b].to_numpy()
                rd = stats.relative_difference(layers, va, vb, top=cfg.top_layers)
                rows.append({**dict(zip(others + ["role", "metric"], vals, strict=True)),
                             "factor": factor, "a": a, "b": b,
                             "mean_rel": rd["mean_rel"], "mean_abs_rel": rd["mean_abs_rel"],
                             "top_layers": ", ".join(str(x) for x in rd["top_layers"]),
                             "mad_a": stats.mad(va), "mad_b": stats.mad(vb)})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    cols = ["factor", "a", "b"] + [k for k in keys if k in out.columns] + ["role", "metric"]
    out = out[cols + [c for c in out.columns if c not in cols]]
    return _sorted(out, ["factor", "a", "b", *CONDITION_KEYS, "metric", "role", *CONTROL_KEYS])


def sample_statistic(df: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """Per sample: the mean over layers of ``metric`` for every role, and over all roles
    (role ``"all"``: mean of the per-role means)."""
    per_role = (df.groupby(keys + ["role", "sample_id"], sort=True)[metric]
                .mean().rename("stat").reset_index())
    allr = (per_role.groupby(keys + ["sample_id"], sort=True)["stat"].mean().reset_index()
            .assign(role=ALL_ROLES))
    return pd.concat([per_role, allr], ignore_index=True)


def separation(df: pd.DataFrame, keys: list[str], metric: str, cfg: CompareConfig,
               notes: list[str]) -> pd.DataFrame:
    """AUROC (with interval) and Cohen's d of the per-sample statistic, positives the
    irrelevant (or corrupted) responses, negatives the correct ones."""
    if "response_kind" not in keys:
        return pd.DataFrame()
    if metric not in df.columns:
        notes.append(f"separation: metric {metric!r} not in the spectra table; skipped")
        return pd.DataFrame()
    stat = sample_statistic(df, keys, metric)
    others = [k for k in keys if k not in ("response_kind", "condition")]
    rows = []
    for vals, sub in _groups(stat, others + ["role"]):
        for pos_kind, neg_kind in KIND_PAIRS:
            pos = sub.loc[sub["response_kind"] == pos_kind, "stat"].to_numpy(dtype=float)
            neg = sub.loc[sub["response_kind"] == neg_kind, "stat"].to_numpy(dtype=float)
            if pos.size == 0 or neg.size == 0:
                continue
            auc, lo, hi = stats.auroc_ci(pos, neg, n_boot=cfg.n_boot, level=cfg.level,
                                         seed=cfg.seed)
            rows.append({**dict(zip(others + ["role"], vals, strict=True)),
                         "statistic": f"mean over layers of {metric}",
                         "positive": pos_kind, "negative": neg_kind,
                         "n_pos": int(pos.size), "n_neg": int(neg.size),
                         "mean_pos": float(np.mean(pos)), "mean_neg": float(np.mean(neg)),
                         "auroc": auc, "auroc_lo": lo, "auroc_hi": hi,
                         "cohens_d": stats.cohens_d(pos, neg)})
    out = pd.DataFrame(rows)
    if out.empty:
        notes.append("separation: needs both correct and irrelevant responses in one "
                     "condition; skipped")
    return out


def _sorted(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sort by ``by`` with CoT levels and roles in their canonical order, not alphabetical."""
    if df.empty:
        return df
    ranks = {"cot_level": COT_ORDER, "role": (*ROLE_ORDER, ALL_ROLES)}
    tmp = df.copy()
    order = []
    for col in by:
        if col not in tmp.columns:
            continue
        if col in ranks:
            tmp[f"_{col}"] = tmp[col].map({v: i for i, v in enumerate(ranks[col])}).fillna(99)
            order.append(f"_{col}")
        else:
            order.append(col)
    tmp = tmp.sort_values(order, kind="stable")
    return tmp.drop(columns=[c for c in order if c.startswith("_")]).reset_index(drop=True)


def compare_runs(paths: Sequence[str | os.PathLike[str]], cfg: CompareConfig | None = None
                 ) -> Comparison:
    """Load the runs and compute every table their contents allow."""
    cfg = cfg or CompareConfig()
    runs = load_runs(expand_grids(paths))  # a grid directory stands for its cells
    comp = Comparison(runs=runs, config=cfg, notes=list(runs.notes))
    raw = runs.tables.get("spectra")
    prepared = prepare_spectra(raw, cfg, comp.notes) if raw is not None else None
    if prepared is not None:
        df, keys, metrics = prepared
        comp.keys = keys
        order = [*CONTROL_KEYS, "dataset", "condition", "response_kind", "cot_level", "metric",
                 "role"]
        curves = _sorted(spectra_curves(df, keys, metrics, cfg, comp.notes), [*order, "layer"])
        comp.tables["spectra_curves"] = curves
        comp.tables["spectra_mad"] = _sorted(spectra_mad(curves, keys), order)
        rel = spectra_reldiff(curves, keys, cfg)
        if not rel.empty:
            comp.tables["spectra_reldiff"] = rel
        sep_metric = cfg.separation_metric
        if cfg.per_loss and sep_metric in SCALE_METRICS and f"{sep_metric}/loss" in df:
            sep_metric = f"{sep_metric}/loss"
        sep = separation(df, keys, sep_metric, cfg, comp.notes)
        if not sep.empty:
            comp.tables["separation"] = _sorted(sep, ["metric", "dataset", "cot_level", "role",
                                                      *CONTROL_KEYS])
    if "spectra_failed" in runs.tables:
        failed = open_failures(runs.tables["spectra_failed"], raw)
        if not failed.empty:
            comp.tables["spectra_failed"] = failed
    if "spectra_samples" in runs.tables:
        top = top_samples(runs.tables["spectra_samples"])
        if not top.empty:
            comp.tables["top_samples"] = top
    if "dynamics" in runs.tables:  # the figure and the summary group by study
        runs.tables["dynamics"] = studies.label_studies(runs.tables["dynamics"],
                                                        runs.manifests)
    comp.tables.update(studies.summarise(runs.tables, comp.notes))
    add_claims(comp)  # seeds 001/002 per model and control, then all five seeds
    return comp


def open_failures(failed: pd.DataFrame, measured: pd.DataFrame | set | None = None
                  ) -> pd.DataFrame:
    """The failures still standing: per sample (``run`` when present, ``source``,
    ``sample_id``) the latest recorded one, unless that sample has rows in ``measured``
    (a ``spectra`` table, or a set of keys): it succeeded on a later attempt."""
    if failed.empty:
        return failed
    key = [c for c in ("run", "source", "sample_id") if c in failed.columns]
    latest = failed.drop_duplicates(key, keep="last")
    if measured is None or len(measured) == 0:
        return latest.reset_index(drop=True)
    if isinstance(measured, pd.DataFrame):
        measured = (set(_keys(measured[key].drop_duplicates(), key))  # rows per matrix
                    if set(key) <= set(measured.columns) else set())
    return latest[[k not in measured for k in _keys(latest, key)]].reset_index(drop=True)


def _keys(df: pd.DataFrame, key: list[str]) -> list[tuple]:
    cols = [df[c].astype(int) if c == "sample_id" else df[c].astype(str) for c in key]
    return list(zip(*cols, strict=True))


def top_samples(samples: pd.DataFrame, *, n: int = TOP_SAMPLES) -> pd.DataFrame:
    """Per condition (and per control setting that varies), the ``n`` samples with the
    largest mean nuclear norm over their matrices, largest first, with text excerpts."""
    group = [c for c in ("run", *CONTROL_KEYS, "condition") if c in samples.columns
             and (c == "condition" or samples[c].astype(str).nunique() > 1)]
    key = [c for c in ("run", "source", "sample_id", *CONTROL_KEYS) if c in samples.columns]
    df = samples.drop_duplicates(key, keep="last").copy()  # a sample re-measured after a kill
    df["mean_nuclear"] = pd.to_numeric(df["mean_nuclear"], errors="coerce")
    df = df[df["mean_nuclear"].notna()]
    if df.empty:
        return pd.DataFrame()
    for col in group:
        df[col] = df[col].astype(object).where(df[col].notna(), MISSING).astype(str)
    df = df.sort_values([*group, "mean_nuclear"], ascending=[True] * len(group) + [False],
                        kind="stable")
    df["rank"] = df.groupby(group, sort=False).cumcount() + 1
    df = df[df["rank"] <= n]
    cols = [*group, "rank", "source", "sample_id", "mean_nuclear", "max_nuclear", "max_layer",
            "max_role", "n_tokens", "loss", "prompt", "response", "answer"]
    cols = [c for c in cols if c in df.columns and (c != "answer" or df[c].notna().any())]
    return df[cols].reset_index(drop=True)
