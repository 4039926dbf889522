# SPDX-License-Identifier: MIT
"""Figures of the layer-spectra study: mean curves over layers per role, one panel per
condition, and correct vs irrelevant responses side by side.

Each function takes the ``spectra_curves`` table of :mod:`thoughtgrad.report.compare`, its
condition keys, a metric and an output folder, and returns the PNG paths it wrote (the PDF
sits beside each); layer axes have integer ticks (:mod:`thoughtgrad.report.figure_style`).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from thoughtgrad.report.compare import COT_ORDER, ROLE_ORDER
from thoughtgrad.report.figure_style import (
    GRAYS,
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

KIND_ORDER = ("correct", "irrelevant", "corrupted")
ATTENTION = ("q", "k", "v", "o", "qkv")
METRIC_LABELS = {
    "nuclear": "nuclear norm (sum of singular values)",
    "nuclear/loss": "nuclear norm / sample loss (per nat)",
    "sigma_max": "largest singular value of the gradient",
    "ratio": "σ_max / nuclear norm (dimensionless)",
    "effective_rank": "effective rank (exp. of spectral entropy)",
    "frobenius": "Frobenius norm of the gradient",
}


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _other_groups(curves: pd.DataFrame, keys: list[str], inner: tuple[str, ...]):
    """Yield ``(labels, rows)`` per group of the keys outside ``inner``; labels name only
    the keys that vary (constant ones would repeat in every title and file name)."""
    others = [k for k in keys if k not in inner and k != "condition"]
    varying = [k for k in others if curves[k].nunique() > 1]
    if not others:
        yield {}, curves
        return
    for vals, sub in curves.groupby(others, sort=True):
        vals = vals if isinstance(vals, tuple) else (vals,)
        yield {k: v for k, v in zip(others, vals, strict=True) if k in varying}, sub


def _curve(ax, sub: pd.DataFrame, i: int, label: str, *, band: float = 0.12, **over) -> None:
    """One mean curve over layers; ``band`` is the opacity of its interval (0: none)."""
    sub = sub.sort_values("layer")
    style = {**series_style(i), **over}
    ax.plot(sub["layer"], sub["mean"], label=label, **style)
    if band and sub["lo"].notna().any():
        ax.fill_between(sub["layer"], sub["lo"], sub["hi"], color=style["color"], alpha=band,
                        linewidth=0)


def _panel_rows(sub: pd.DataFrame, keys: list[str]) -> list[tuple[object, object]]:
    """Panel rows: ``(response_kind, condition)`` pairs present; the condition only when it
    distinguishes rows (it is a comparison key), else ``None``."""
    kinds = ordered(sub["response_kind"], KIND_ORDER) if "response_kind" in sub else [None]
    if "condition" not in keys:
        return [(k, None) for k in kinds]
    out = []
    for kind in kinds:
        part = sub if kind is None else sub[sub["response_kind"] == kind]
        out += [(kind, c) for c in sorted(set(part["condition"]), key=str)]
    return out


def _cell(sub: pd.DataFrame, level: object, kind: object, cond: object) -> pd.DataFrame:
    if level is not None:
        sub = sub[sub["cot_level"] == level]
    if kind is not None:
        sub = sub[sub["response_kind"] == kind]
    if cond is not None:
        sub = sub[sub["condition"] == cond]
    return sub


def _cell_title(level: object, kind: object, cond: object) -> str:
    parts = [str(x) for x in (level, kind) if x is not None]
    if cond is not None and str(cond) != "/".join(parts):
        parts.append(f"condition {cond}")
    return " / ".join(parts) or "all samples"


def spectra_panels(curves: pd.DataFrame, keys: list[str], metric: str, out_dir: Path
                   ) -> list[Path]:
    """The paper's layout: one panel per condition (columns CoT level, rows response kind,
    and user condition labels when they distinguish rows), one curve per role over
    layers, shaded 95 % bootstrap interval."""
    plt = pyplot()
    data = curves[curves["metric"] == metric]
    paths = []
    for labels, sub in _other_groups(data, keys, ("cot_level", "response_kind")):
        cols = ordered(sub["cot_level"], COT_ORDER) if "cot_level" in sub else [None]
        rows = _panel_rows(sub, keys)
        fig, axes = panel_grid(plt, len(rows), len(cols), width=3.3, height=2.6,
                               sharex=True, sharey=True)
        for (r, (kind, cond)), (c, level) in itertools.product(enumerate(rows),
                                                               enumerate(cols)):
            ax = axes[r][c]
            cell = _cell(sub, level, kind, cond)
            roles = ordered(cell["role"], ROLE_ORDER)
            for i, role in enumerate(roles):  # fainter bands when many overlap
                _curve(ax, cell[cell["role"] == role], i, role,
                       band=0.12 if len(roles) <= 4 else 0.05)
            if cell.empty:
                ax.text(0.5, 0.5, "no samples", ha="center", va="center",
                        transform=ax.transAxes, color="0.5")
            ax.set_title(_cell_title(level, kind, cond), fontsize=8)
            integer_ticks(ax)
            if r == len(rows) - 1:
                ax.set_xlabel("layer (0 = nearest the input)")
        log_y_if_wide(axes, sub["mean"])
        fig.supylabel(_metric_label(metric), fontsize=8)
        legend_below(fig, axes, "role", max_cols=9)
        fig.suptitle(f"{metric} per layer  {labels_title(labels)}".strip(), fontsize=9)
        paths.append(save(fig, out_dir, f"spectra_{slug(metric)}_{slug(labels_title(labels))}"))
    return paths


def correct_vs_irrelevant(curves: pd.DataFrame, keys: list[str], metric: str, out_dir: Path
                          ) -> list[Path]:
    """One panel per CoT level: attention roles' curves for correct (solid, filled markers)
    and irrelevant (dashed, open markers) responses; a distinguishing user condition
    label gets its own curves."""
    if "response_kind" not in keys:
        return []
    plt = pyplot()
    data = curves[curves["metric"] == metric]
    paths = []
    for labels, sub in _other_groups(data, keys, ("cot_level", "response_kind")):
        kinds = ordered(sub["response_kind"], KIND_ORDER)
        if "correct" not in kinds or len(kinds) < 2:
            continue
        roles = [r for r in ordered(sub["role"], ROLE_ORDER) if r in ATTENTION] or \
            ordered(sub["role"], ROLE_ORDER)[:4]
        levels = ordered(sub["cot_level"], COT_ORDER) if "cot_level" in sub else [None]
        series = _panel_rows(sub, keys)  # (kind, condition) pairs
        fig, axes = panel_grid(plt, 1, len(levels), width=3.4, height=2.9, sharey=True)
        for c, level in enumerate(levels):
            ax = axes[0][c]
            for i, role in enumerate(roles):
                for kind, cond in series:
                    part = _cell(sub, level, kind, cond)
                    part = part[part["role"] == role]
                    if part.empty:
                        continue
                    j = kinds.index(kind)
                    name = f"{role} {kind}" + (f" ({cond})" if cond is not None
                                               and str(cond) != f"{level}/{kind}" else "")
                    _curve(ax, part, i, name, band=0.0, linestyle=("-", "--", ":")[j % 3],
                           markerfacecolor="none" if j else GRAYS[i % len(GRAYS)])
            ax.set_title(f"CoT: {level}" if level is not None else "all", fontsize=8)
            ax.set_xlabel("layer (0 = nearest the input)")
            integer_ticks(ax)
        fig.supylabel(_metric_label(metric), fontsize=7)
        log_y_if_wide(axes, sub.loc[sub["role"].isin(roles), "mean"])
        legend_below(fig, axes, "role and response (solid = correct, dashed = irrelevant)",
                     max_cols=len(kinds) * 2)
        fig.suptitle(f"correct vs irrelevant: {metric}  {labels_title(labels)}".strip(), fontsize=9)
        paths.append(save(fig, out_dir,
                          f"correct_vs_irrelevant_{slug(metric)}_{slug(labels_title(labels))}"))
    return paths
