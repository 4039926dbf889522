# SPDX-License-Identifier: MIT
"""Figures of every study (matplotlib, Agg backend), saved as PNG and PDF.

Readable in grayscale: every series differs by marker *and* line style, not only by
shade; axes carry units; layer and K axes have integer ticks. Every figure uses
constrained layout with its legend below the panels, so titles, labels, ticks and
legends never overlap. Each function takes the tidy tables of
:mod:`thoughtgrad.report.compare` / :mod:`~thoughtgrad.report.studies` (or a raw run table)
and an output folder, and returns the PNG paths it wrote (the PDF sits beside each).
"""

from __future__ import annotations

import itertools
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from thoughtgrad.report.compare import Comparison

log = logging.getLogger(__name__)

DPI = 110
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 2)), (0, (3, 1, 1, 1, 1, 1)))
GRAYS = ("0.0", "0.35", "0.55", "0.2", "0.45", "0.65", "0.1", "0.3", "0.5")
HATCHES = ("", "//", "..", "xx", "\\\\", "oo", "--", "++", "**")
ROLE_ORDER = ("q", "k", "v", "o", "qkv", "gate", "up", "gate_up", "down")
COT_ORDER = ("none", "half_steps", "simplified", "detailed")
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


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.color": "0.88",
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _style(i: int) -> dict[str, object]:
    return {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "color": GRAYS[i % len(GRAYS)], "markersize": 4, "linewidth": 1.3}


def _ordered(values, order) -> list:
    rank = {v: i for i, v in enumerate(order)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), str(v)))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "all"


def _save(fig, out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=DPI, bbox_inches="tight")
    fig.savefig(out_dir / f"{name}.pdf", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return png


def _figure(plt, n_rows: int, n_cols: int, *, width: float, height: float, **kw):
    """A constrained-layout figure of ``n_rows x n_cols`` panels (axes always 2-D)."""
    return plt.subplots(n_rows, n_cols, figsize=(width * n_cols, height * n_rows),
                        squeeze=False, layout="constrained", **kw)


def _legend_below(fig, axes, title: str | None = None, *, max_cols: int = 6) -> None:
    """One legend for the figure, below its panels (outside them), from every panel's
    labelled series (each label once)."""
    seen: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(name, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center",
                   ncol=min(len(seen), max_cols), frameon=False, title=title, fontsize=8)


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


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


LOG_SPAN = 100.0  # curves spanning more than this factor get a log y axis


def _maybe_log(axes, values: pd.Series) -> None:
    """Log y axis when positive curves span more than ``LOG_SPAN`` (e.g. q/k gradients of
    a random-init model far below v/o), so small curves are not flattened at zero."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    if len(v) and (v > 0).all() and v.max() / v.min() > LOG_SPAN:
        for ax in np.ravel(axes):
            ax.set_yscale("log")


def _title(labels: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in labels.items())


def _curve(ax, sub: pd.DataFrame, i: int, label: str, *, band: float = 0.12, **over) -> None:
    """One mean curve over layers; ``band`` is the opacity of its interval (0: none)."""
    sub = sub.sort_values("layer")
    style = {**_style(i), **over}
    ax.plot(sub["layer"], sub["mean"], label=label, **style)
    if band and sub["lo"].notna().any():
        ax.fill_between(sub["layer"], sub["lo"], sub["hi"], color=style["color"], alpha=band,
                        linewidth=0)


def _panel_rows(sub: pd.DataFrame, keys: list[str]) -> list[tuple[object, object]]:
    """Panel rows: ``(response_kind, condition)`` pairs present; the condition only when it
    distinguishes rows (it is a comparison key), else ``None``."""
    kinds = _ordered(sub["response_kind"], KIND_ORDER) if "response_kind" in sub else [None]
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
    plt = _plt()
    data = curves[curves["metric"] == metric]
    paths = []
    for labels, sub in _other_groups(data, keys, ("cot_level", "response_kind")):
        cols = _ordered(sub["cot_level"], COT_ORDER) if "cot_level" in sub else [None]
        rows = _panel_rows(sub, keys)
        fig, axes = _figure(plt, len(rows), len(cols), width=3.3, height=2.6, sharex=True,
                            sharey=True)
        for (r, (kind, cond)), (c, level) in itertools.product(enumerate(rows),
                                                               enumerate(cols)):
            ax = axes[r][c]
            cell = _cell(sub, level, kind, cond)
            roles = _ordered(cell["role"], ROLE_ORDER)
            for i, role in enumerate(roles):  # fainter bands when many overlap
                _curve(ax, cell[cell["role"] == role], i, role,
                       band=0.12 if len(roles) <= 4 else 0.05)
            if cell.empty:
                ax.text(0.5, 0.5, "no samples", ha="center", va="center",
                        transform=ax.transAxes, color="0.5")
            ax.set_title(_cell_title(level, kind, cond), fontsize=8)
            _integer_ticks(ax)
            if r == len(rows) - 1:
                ax.set_xlabel("layer (0 = nearest the input)")
        _maybe_log(axes, sub["mean"])
        fig.supylabel(_metric_label(metric), fontsize=8)
        _legend_below(fig, axes, "role", max_cols=9)
        fig.suptitle(f"{metric} per layer  {_title(labels)}".strip(), fontsize=9)
        paths.append(_save(fig, out_dir, f"spectra_{_slug(metric)}_{_slug(_title(labels))}"))
    return paths


def correct_vs_irrelevant(curves: pd.DataFrame, keys: list[str], metric: str, out_dir: Path
                          ) -> list[Path]:
    """One panel per CoT level: attention roles' curves for correct (solid, filled markers)
    and irrelevant (dashed, open markers) responses; a distinguishing user condition
    label gets its own curves."""
    if "response_kind" not in keys:
        return []
    plt = _plt()
    data = curves[curves["metric"] == metric]
    paths = []
    for labels, sub in _other_groups(data, keys, ("cot_level", "response_kind")):
        kinds = _ordered(sub["response_kind"], KIND_ORDER)
        if "correct" not in kinds or len(kinds) < 2:
            continue
        roles = [r for r in _ordered(sub["role"], ROLE_ORDER) if r in ATTENTION] or \
            _ordered(sub["role"], ROLE_ORDER)[:4]
        levels = _ordered(sub["cot_level"], COT_ORDER) if "cot_level" in sub else [None]
        series = _panel_rows(sub, keys)  # (kind, condition) pairs
        fig, axes = _figure(plt, 1, len(levels), width=3.4, height=2.9, sharey=True)
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
            _integer_ticks(ax)
        fig.supylabel(_metric_label(metric), fontsize=7)
        _maybe_log(axes, sub.loc[sub["role"].isin(roles), "mean"])
        _legend_below(fig, axes, "role and response (solid = correct, dashed = irrelevant)",
                      max_cols=len(kinds) * 2)
        fig.suptitle(f"correct vs irrelevant: {metric}  {_title(labels)}".strip(), fontsize=9)
        paths.append(_save(fig, out_dir,
                           f"correct_vs_irrelevant_{_slug(metric)}_{_slug(_title(labels))}"))
    return paths


def accuracy_chart(acc: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Accuracy per K, one line per regime; the training range shaded, OOD K hatched."""
    plt = _plt()
    regimes = [c for c in ("direct", "answer", "simplified", "cot") if c in acc.columns]
    groups = [c for c in ("task", "train_size") if c in acc.columns]
    paths = []
    for vals, sub in (acc.groupby(groups, sort=True) if groups else [((), acc)]):
        vals = vals if isinstance(vals, tuple) else (vals,)
        sub = sub.groupby("k", sort=True)[regimes].mean().reset_index()
        fig, axes = _figure(plt, 1, 1, width=5.2, height=3.6)
        ax = axes[0][0]
        ood = acc.loc[acc.get("split", pd.Series(dtype=str)).eq("ood"), "k"] \
            if "split" in acc else pd.Series(dtype=int)
        train_ks = sorted(set(sub["k"]) - set(ood)) if len(ood) else [k for k in sub["k"]
                                                                       if k <= 6]
        if train_ks:
            ax.axvspan(min(train_ks) - 0.5, max(train_ks) + 0.5, color="0.93", zorder=0,
                       label="training range of K")
        ood_ks = sorted(set(sub["k"]) - set(train_ks))
        if ood_ks:
            ax.axvspan(min(ood_ks) - 0.5, max(ood_ks) + 0.5, facecolor="none", hatch="//",
                       edgecolor="0.7", zorder=0, label="out of distribution")
        for i, regime in enumerate(regimes):
            ax.plot(sub["k"], 100 * sub[regime], label=regime, **_style(i))
        ax.set_xlabel("K (digits per problem)")
        ax.set_ylabel("accuracy (% of problems)")
        ax.set_ylim(-3, 103)
        ax.set_xticks(sub["k"])
        _legend_below(fig, axes)
        ax.set_title(_title(dict(zip(groups, vals, strict=True))) or "accuracy per K",
                     fontsize=9)
        paths.append(_save(fig, out_dir, f"accuracy_{_slug('_'.join(map(str, vals)))}"))
    return paths


def error_bars(errors: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The error taxonomy: per regime and K, stacked bars of failure counts by kind."""
    plt = _plt()
    kinds = [c for c in errors.columns if c not in ("task", "regime", "k")]
    if not kinds:
        return []
    paths = []
    for task, sub in (errors.groupby("task", sort=True) if "task" in errors else [("", errors)]):
        regimes = _ordered(sub["regime"], ("direct", "answer", "simplified", "cot"))
        fig, axes = _figure(plt, 1, len(regimes), width=3.6, height=3.2, sharey=True)
        for c, regime in enumerate(regimes):
            ax = axes[0][c]
            part = sub[sub["regime"] == regime].sort_values("k")
            bottom = np.zeros(len(part))
            for i, kind in enumerate(kinds):
                h = part[kind].to_numpy(dtype=float)
                ax.bar(part["k"], h, bottom=bottom, label=kind, color=GRAYS[i % len(GRAYS)],
                       hatch=HATCHES[i % len(HATCHES)], edgecolor="black", linewidth=0.5)
                bottom += h
            ax.set_xticks(sorted(sub["k"].unique()))
            ax.set_title(f"{regime}")
            ax.set_xlabel("K (digits per problem)")
            if c == 0:
                ax.set_ylabel("failed problems (count)")
        _legend_below(fig, axes, "error kind")
        fig.suptitle(f"error taxonomy {task}".strip(), fontsize=9)
        paths.append(_save(fig, out_dir, f"errors_{_slug(str(task))}"))
    return paths


def dynamics_figure(dyn: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Training dynamics, regimes side by side: loss, gradient norm with spikes marked,
    cosine to the previous gradient, lambda_max where measured, distance from init."""
    plt = _plt()
    panels = [(c, lab) for c, lab in (
        ("loss", "loss (nats per response token)"), ("grad_norm", "gradient L2 norm"),
        ("cos_prev", "cosine to previous gradient"), ("lambda_max", "Hessian λ_max"),
        ("dist_init", "distance from init (L2)")) if c in dyn and dyn[c].notna().any()]
    if not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False,
                             layout="constrained")
    for i, regime in enumerate(_ordered(dyn["regime"], ("direct", "answer", "simplified",
                                                         "cot"))):
        sub = dyn[dyn["regime"] == regime].sort_values("step")
        st = {**_style(i), "markersize": 3}
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
    if "lambda_iters" in dyn and dyn["lambda_iters"].notna().any():
        col = [c for c, _ in panels].index("lambda_max") if "lambda_max" in dict(panels) else None
        if col is not None:
            axes[0][col].set_title(f"median {dyn['lambda_iters'].median():.0f} iterations",
                                   fontsize=7)
    _legend_below(fig, axes, "regime (x / + marks a gradient-norm spike)")
    return [_save(fig, out_dir, "dynamics")]


def surprisal_profile(sur: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Surprisal (bits) per response position of one sample under each condition."""
    plt = _plt()
    common = sur.groupby("sample_id")["condition"].nunique().sort_values(ascending=False)
    sample = common.index[0]
    fig, axes = _figure(plt, 1, 1, width=6.0, height=3.2)
    ax = axes[0][0]
    part = sur[sur["sample_id"] == sample]
    for i, (cond, sub) in enumerate(part.sort_values("position").groupby("condition")):
        ax.plot(sub["position"], sub["surprisal_bits"], label=str(cond), **_style(i))
    ax.set_xlabel("response token position")
    ax.set_ylabel("surprisal (bits)")
    ax.set_title(f"sample {sample}", fontsize=9)
    _integer_ticks(ax)
    _legend_below(fig, axes, "condition")
    return [_save(fig, out_dir, "surprisal_profile")]


def lemma2_scatter(sur: pd.DataFrame, out_dir: Path) -> list[Path]:
    """p_true against the logit-gradient norm, with Lemma 2's bounds
    ``1 - p <= ||g|| <= sqrt(2) (1 - p)``."""
    if not {"p_true", "logit_grad_norm"} <= set(sur.columns):
        return []
    plt = _plt()
    fig, axes = _figure(plt, 1, 1, width=4.8, height=3.8)
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
    _legend_below(fig, axes, max_cols=3)
    return [_save(fig, out_dir, "lemma2")]


PANEL_COLUMNS = 4  # panels per row of a figure with one panel per K


def scale_chart(scale: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Test-time compute knobs side by side: one figure per task, one panel per K,
    accuracy against compute per problem (FLOPs, log scale; tokens when FLOPs are
    absent), one curve per knob (:func:`thoughtgrad.report.studies.knob_curves`: more
    layers L, CoT tokens, majority vote over n samples, loop count r), each curve's end
    labelled with its largest budget. ``scale`` is the run's raw ``scale`` table."""
    from matplotlib.ticker import NullFormatter

    from thoughtgrad.report.studies import knob_curves

    plt = _plt()
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
        fig, axes = _figure(plt, n_rows, n_cols, width=3.0, height=2.6, sharex=True,
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
                ax.plot(part[x], 100 * part["accuracy"], label=curve, **_style(i))
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
        _legend_below(fig, axes, "knob; the label at a curve's end is its largest budget "
                                 "(L layers, n samples, r loops)", max_cols=4)
        fig.suptitle(f"test-time compute knobs: {task}".rstrip(": "), fontsize=9)
        paths.append(_save(fig, out_dir, f"scale_{_slug(str(task))}"))
    return paths


def render_all(comp: Comparison, out_dir: Path) -> dict[str, list[Path]]:
    """Every figure a comparison allows, by report section; a figure that fails becomes
    a note on ``comp.notes`` instead of stopping the report."""
    t = comp.tables
    runs = comp.runs.tables
    jobs: list[tuple[str, object, tuple]] = []
    if "spectra_curves" in t and not t["spectra_curves"].empty:
        curves = t["spectra_curves"]
        for metric in _ordered(curves["metric"], tuple(METRIC_LABELS)):
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
