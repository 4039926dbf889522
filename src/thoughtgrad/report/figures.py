# SPDX-License-Identifier: MIT
"""Figures of every study, saved as PNG and PDF (:mod:`thoughtgrad.report.figure_style`):
toy accuracy and error taxonomy, training dynamics, surprisal, test-time compute, and the
spectra figures of :mod:`thoughtgrad.report.spectra_figures`.

Readable in grayscale: every series differs by marker *and* line style, not only by
shade; axes carry units; layer and K axes have integer ticks. Each function takes the tidy
tables of :mod:`thoughtgrad.report.compare` / :mod:`~thoughtgrad.report.studies` (or a raw
run table) and an output folder, and returns the PNG paths it wrote (the PDF sits beside
each); :func:`render_all` draws every figure a comparison allows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from thoughtgrad.evaluate.tables import REGIME_ORDER
from thoughtgrad.report.figure_style import (
    GRAYS,
    HATCHES,
    MARKERS,
    integer_ticks,
    labels_title,
    legend_below,
    log_y_if_wide,
    ordered,
    panel_grid,
    pyplot,
    save,
    series_style,
    slug,
)
from thoughtgrad.report.spectra_figures import (
    METRIC_LABELS,
    correct_vs_irrelevant,
    spectra_panels,
)

if TYPE_CHECKING:
    from thoughtgrad.report.compare import Comparison

log = logging.getLogger(__name__)


def training_ks(rows: pd.DataFrame) -> list[int]:
    """The K values a group of accuracy rows was trained on, from its own ``split`` column
    (a model trained on K 2..4 shades 2..4); K <= 6, the toy default, for tables without one."""
    if "split" in rows:
        return sorted(set(rows.loc[rows["split"].astype(str).eq("in_distribution"), "k"]))
    return sorted({int(k) for k in rows["k"] if k <= 6})


def accuracy_chart(acc: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Accuracy per K, one line per regime; the training range shaded, OOD K hatched."""
    plt = pyplot()
    regimes = [c for c in REGIME_ORDER if c in acc.columns]
    groups = [c for c in ("task", "train_size") if c in acc.columns]
    paths = []
    for vals, sub in (acc.groupby(groups, sort=True) if groups else [((), acc)]):
        vals = vals if isinstance(vals, tuple) else (vals,)
        train_ks = training_ks(sub)
        sub = sub.groupby("k", sort=True)[regimes].mean().reset_index()
        fig, axes = panel_grid(plt, 1, 1, width=5.2, height=3.6)
        ax = axes[0][0]
        if train_ks:
            ax.axvspan(min(train_ks) - 0.5, max(train_ks) + 0.5, color="0.93", zorder=0,
                       label="training range of K")
        ood_ks = sorted(set(sub["k"]) - set(train_ks))
        if ood_ks:
            ax.axvspan(min(ood_ks) - 0.5, max(ood_ks) + 0.5, facecolor="none", hatch="//",
                       edgecolor="0.7", zorder=0, label="out of distribution")
        for i, regime in enumerate(regimes):
            ax.plot(sub["k"], 100 * sub[regime], label=regime, **series_style(i))
        ax.set_xlabel("K (digits per problem)")
        ax.set_ylabel("accuracy (% of problems)")
        ax.set_ylim(-3, 103)
        ax.set_xticks(sub["k"])
        legend_below(fig, axes)
        ax.set_title(labels_title(dict(zip(groups, vals, strict=True))) or "accuracy per K",
                     fontsize=9)
        paths.append(save(fig, out_dir, f"accuracy_{slug('_'.join(map(str, vals)))}"))
    return paths


def error_bars(errors: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The error taxonomy: per regime and K, stacked bars of failure counts by kind."""
    plt = pyplot()
    kinds = [c for c in errors.columns if c not in ("task", "regime", "k")]
    if not kinds:
        return []
    paths = []
    for task, sub in (errors.groupby("task", sort=True) if "task" in errors else [("", errors)]):
        regimes = ordered(sub["regime"], REGIME_ORDER)
        fig, axes = panel_grid(plt, 1, len(regimes), width=3.6, height=3.2, sharey=True)
        for c, regime in enumerate(regimes):
            ax = axes[0][c]
            part = sub[sub["regime"] == regime].sort_values("k")
            bottom = np.zeros(len(part))
            for i, kind in enumerate(kinds):
                h = part[kind].to_numpy(dtype=float)
                ax.bar(part["k"], h, bottom=bottom, label=kind, color=GRAYS[i % len(GRAYS)],
                       hatch=HATCHES[i % len(HATCHES)], edgecolor="black", linewidth=0.5)
                bottom += h
            ks = sorted(sub["k"].unique())
            ax.set_xticks(ks)
            ax.set_xlim(ks[0] - 0.6, ks[-1] + 0.6)  # the same K range in every panel
            ax.set_title(f"{regime}")
            ax.set_xlabel("K (digits per problem)")
            if c == 0:
                ax.set_ylabel("failed problems (count)")
        legend_below(fig, axes, "error kind")
        fig.suptitle(f"error taxonomy {task}".strip(), fontsize=9)
        paths.append(save(fig, out_dir, f"errors_{slug(str(task))}"))
    return paths


def dynamics_figure(dyn: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Training dynamics, regimes side by side: loss, gradient norm with spikes marked,
    cosine to the previous gradient, lambda_max where measured, distance from init. One
    figure per study when the rows come from several (a ``study`` column: a toy model and a
    trained LM are never drawn on one axis)."""
    studies = list(dict.fromkeys(dyn["study"])) if "study" in dyn else []
    if len(studies) > 1:
        return [p for i, r in enumerate(studies)
                for p in _dynamics_figure(dyn[dyn["study"] == r], out_dir,
                                          f"dynamics_{i + 1}_{slug(str(r))}", str(r))]
    return _dynamics_figure(dyn, out_dir, "dynamics", None)


def _dynamics_figure(dyn: pd.DataFrame, out_dir: Path, name: str, title: str | None
                     ) -> list[Path]:
    plt = pyplot()
    panels = [(c, lab) for c, lab in (
        ("loss", "loss (nats per response token)"), ("grad_norm", "gradient L2 norm"),
        ("cos_prev", "cosine to previous gradient"), ("lambda_max", "Hessian λ_max"),
        ("dist_init", "distance from init (L2)")) if c in dyn and dyn[c].notna().any()]
    if not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False,
                             layout="constrained")
    for i, regime in enumerate(ordered(dyn["regime"], REGIME_ORDER)):
        sub = dyn[dyn["regime"] == regime].sort_values("step")
        st = {**series_style(i), "markersize": 3}
        for ax, (col, lab) in zip(axes[0], panels, strict=True):
            part = sub[sub[col].notna()]
            if col == "lambda_max":
                ax.plot(part["step"], part[col], label=regime, **st)
            else:
                ax.plot(part["step"], part[col], label=regime, linestyle=st["linestyle"],
                        color=st["color"], linewidth=1.1)
            if col == "grad_norm" and "spike" in sub:
                sp = part[part["spike"].fillna(False).astype(bool)]
                ax.scatter(sp["step"], sp[col], marker="x+1234"[i % 6], s=45, color="black",
                           zorder=5,
                           label=f"{regime} spike" if len(sp) else None)
            ax.set_xlabel("training step")
            ax.set_ylabel(lab)
    for ax, (col, _) in zip(axes[0], panels, strict=True):
        if col != "cos_prev":
            log_y_if_wide([ax], dyn[col])
    if "lambda_iters" in dyn and dyn["lambda_iters"].notna().any():
        col = [c for c, _ in panels].index("lambda_max") if "lambda_max" in dict(panels) else None
        if col is not None:
            axes[0][col].set_title(f"median {dyn['lambda_iters'].median():.0f} iterations",
                                   fontsize=7)
    legend_below(fig, axes, "regime (x / + marks a gradient-norm spike)")
    if title:
        fig.suptitle(title, fontsize=9)
    return [save(fig, out_dir, name)]


def surprisal_profile(sur: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Surprisal (bits) per response position of one sample under each condition."""
    plt = pyplot()
    common = sur.groupby("sample_id")["condition"].nunique().sort_values(ascending=False)
    sample = common.index[0]
    fig, axes = panel_grid(plt, 1, 1, width=6.0, height=3.2)
    ax = axes[0][0]
    part = sur[sur["sample_id"] == sample]
    for i, (cond, sub) in enumerate(part.sort_values("position").groupby("condition")):
        ax.plot(sub["position"], sub["surprisal_bits"], label=str(cond), **series_style(i))
    ax.set_xlabel("response token position")
    ax.set_ylabel("surprisal (bits)")
    ax.set_title(f"sample {sample}", fontsize=9)
    integer_ticks(ax)
    legend_below(fig, axes, "condition")
    return [save(fig, out_dir, "surprisal_profile")]


def lemma2_scatter(sur: pd.DataFrame, out_dir: Path) -> list[Path]:
    """p_true against the logit-gradient norm, with Lemma 2's bounds
    ``1 - p <= ||g|| <= sqrt(2) (1 - p)``."""
    if not {"p_true", "logit_grad_norm"} <= set(sur.columns):
        return []
    plt = pyplot()
    fig, axes = panel_grid(plt, 1, 1, width=4.8, height=3.8)
    ax = axes[0][0]
    for i, (cond, sub) in enumerate(sur.groupby("condition", sort=True)):
        ax.scatter(sub["p_true"], sub["logit_grad_norm"], s=10, marker=MARKERS[i % 9],
                   facecolors="none" if i % 2 else GRAYS[i % 9], edgecolors=GRAYS[i % 9],
                   label=str(cond), linewidths=0.7)
    p = np.linspace(0, 1, 200)
    ax.plot(p, 1 - p, color="black", linestyle="--", label="lower bound 1−p")
    ax.plot(p, np.sqrt(2) * (1 - p), color="black", linestyle=":", label="upper bound √2(1−p)")
    ax.set_xlabel("p_true (probability of the target token)")
    ax.set_ylabel("‖∂loss/∂logits‖₂ (per token)")
    legend_below(fig, axes, max_cols=3)
    return [save(fig, out_dir, "lemma2")]


PANEL_COLUMNS = 4  # panels per row of a figure with one panel per K


def scale_chart(scale: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Test-time compute knobs side by side: one figure per task, one panel per K,
    accuracy against compute per problem (FLOPs, log scale; tokens when FLOPs are
    absent), one curve per knob (:func:`thoughtgrad.report.studies.knob_curves`: more
    layers L, CoT tokens, majority vote over n samples, loop count r), each curve's end
    labelled with its largest budget. ``scale`` is the run's raw ``scale`` table."""
    from matplotlib.ticker import NullFormatter

    from thoughtgrad.report.studies import knob_curves

    plt = pyplot()
    x, xlabel = "n", "budget (samples, layers or loops)"
    for col, lab in (("compute_flops", "compute per problem (FLOPs, log scale)"),
                     ("compute_tokens", "compute per problem (token positions, log scale)")):
        if col in scale and scale[col].notna().any():
            x, xlabel = col, lab
            break
    data = knob_curves(scale)
    paths = []
    for task, sub in (data.groupby("task", sort=True) if "task" in data else [("", data)]):
        ks = sorted(sub["k"].unique()) if "k" in sub else [None]
        curves = list(dict.fromkeys(sub.sort_values(["knob", "curve"])["curve"]))
        n_cols = min(PANEL_COLUMNS, len(ks))
        n_rows = -(-len(ks) // n_cols)
        fig, axes = panel_grid(plt, n_rows, n_cols, width=3.0, height=2.6, sharex=True,
                               sharey=True)
        ood = set(sub.loc[sub["split"].astype(str).str.startswith("out"), "k"]) \
            if "split" in sub else set()
        for idx, k in enumerate(ks):
            ax = axes[idx // n_cols][idx % n_cols]
            panel = sub if k is None else sub[sub["k"] == k]
            for i, curve in enumerate(curves):
                part = panel[panel["curve"] == curve].groupby(
                    ["budget_rank", "budget"], as_index=False)[[x, "accuracy"]].mean()
                if part.empty:
                    continue
                part = part.sort_values("budget_rank")
                ax.plot(part[x], 100 * part["accuracy"], label=curve, **series_style(i))
                last = part.iloc[-1]  # the largest budget names the curve's end
                ax.annotate(last["budget"], (last[x], 100 * last["accuracy"]),
                            textcoords="offset points", xytext=(3, 3), fontsize=6, color="0.3")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # no crowded 2x10^5 3x10^5 labels
            ax.set_ylim(-5, 105)
            if idx + n_cols >= len(ks):  # no panel below: label the x axis here
                ax.set_xlabel(xlabel, fontsize=8)
                ax.xaxis.set_tick_params(labelbottom=True)
            title = "all K" if k is None else f"K = {k}" + (" (out of distribution)"
                                                            if k in ood else "")
            ax.set_title(title, fontsize=8)
        for idx in range(len(ks), n_rows * n_cols):
            axes[idx // n_cols][idx % n_cols].set_visible(False)
        fig.supylabel("accuracy (% of problems)", fontsize=8)
        legend_below(fig, axes, "knob; the label at a curve's end is its largest budget "
                                "(L layers, n samples, r loops)", max_cols=4)
        fig.suptitle(f"test-time compute knobs: {task}".rstrip(": "), fontsize=9)
        paths.append(save(fig, out_dir, f"scale_{slug(str(task))}"))
    return paths


def render_all(comp: Comparison, out_dir: Path) -> dict[str, list[Path]]:
    """Every figure a comparison allows, by report section; a figure that fails becomes
    a note on ``comp.notes`` instead of stopping the report."""
    t = comp.tables
    runs = comp.runs.tables
    jobs: list[tuple[str, object, tuple]] = []
    if "spectra_curves" in t and not t["spectra_curves"].empty:
        curves = t["spectra_curves"]
        for metric in ordered(curves["metric"], tuple(METRIC_LABELS)):
            jobs.append(("spectra", spectra_panels, (curves, comp.keys, metric, out_dir)))
        for metric in [m for m in ("nuclear/loss", "nuclear") if m in set(curves["metric"])][:1]:
            jobs.append(("separation", correct_vs_irrelevant,
                         (curves, comp.keys, metric, out_dir)))
    if "accuracy" in t:
        jobs.append(("toy", accuracy_chart, (t["accuracy"], out_dir)))
    if "errors" in t:
        jobs.append(("toy", error_bars, (t["errors"], out_dir)))
    if "dynamics" in runs:
        jobs.append(("dynamics", dynamics_figure, (runs["dynamics"], out_dir)))
    if "surprisal" in runs and {"sample_id", "condition", "position", "surprisal_bits"} <= set(
            runs["surprisal"].columns):
        jobs.append(("surprisal", surprisal_profile, (runs["surprisal"], out_dir)))
        jobs.append(("surprisal", lemma2_scatter, (runs["surprisal"], out_dir)))
    if "scale" in t:
        jobs.append(("scale", scale_chart, (runs["scale"], out_dir)))
    out: dict[str, list[Path]] = {}
    for section, fn, args in jobs:
        try:
            out.setdefault(section, []).extend(fn(*args))
        except Exception as exc:  # noqa: BLE001 - one bad figure must not sink the report
            log.warning("figure %s failed: %s", fn.__name__, exc)
            comp.notes.append(f"figure {fn.__name__}: not drawn ({type(exc).__name__}: {exc})")
    return out
