# SPDX-License-Identifier: MIT
"""The look every figure shares (matplotlib, Agg backend), and how it is saved.

Readable in grayscale: every series differs by marker *and* line style, not only by
shade (:func:`series_style`); panels sit in a constrained layout (:func:`panel_grid`)
with one legend below them (:func:`legend_below`), so titles, labels, ticks and legends
never overlap. A figure is saved as PNG and PDF side by side (:func:`save`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

DPI = 110
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 2)), (0, (3, 1, 1, 1, 1, 1)))
GRAYS = ("0.0", "0.35", "0.55", "0.2", "0.45", "0.65", "0.1", "0.3", "0.5")
HATCHES = ("", "//", "..", "xx", "\\\\", "oo", "--", "++", "**")


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend with the house style set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.color": "0.88",
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def series_style(i: int) -> dict[str, object]:
    """Plot keywords of the ``i``-th series: marker, line style and gray all differ."""
    return {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "color": GRAYS[i % len(GRAYS)], "markersize": 4, "linewidth": 1.3}


def ordered(values, order) -> list:
    """The distinct ``values`` in the canonical ``order``; unknown ones last, by name."""
    rank = {v: i for i, v in enumerate(order)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(rank)), str(v)))


def slug(text: str) -> str:
    """``text`` as a file-name part (at most 80 characters; ``all`` when empty)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "all"


def save(fig, out_dir: Path, name: str) -> Path:
    """Write ``<name>.png`` and ``<name>.pdf`` to ``out_dir``, close ``fig``; the PNG path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    fig.savefig(png, dpi=DPI, bbox_inches="tight")
    fig.savefig(out_dir / f"{name}.pdf", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return png


def panel_grid(plt, n_rows: int, n_cols: int, *, width: float, height: float, **kw):
    """A constrained-layout figure of ``n_rows x n_cols`` panels (axes always 2-D)."""
    return plt.subplots(n_rows, n_cols, figsize=(width * n_cols, height * n_rows),
                        squeeze=False, layout="constrained", **kw)


def legend_below(fig, axes, title: str | None = None, *, max_cols: int = 6) -> None:
    """One legend for the figure, below its panels (outside them), from every panel's
    labelled series (each label once)."""
    seen: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(name, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside lower center",
                   ncol=min(len(seen), max_cols), frameon=False, title=title, fontsize=8)


def integer_ticks(ax) -> None:
    """Integer ticks on the x axis (layers, K, positions)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def labels_title(labels: dict[str, object]) -> str:
    """``key=value, ...`` of the labels that name a figure."""
    return ", ".join(f"{k}={v}" for k, v in labels.items())


LOG_SPAN = 100.0
"""Curves spanning more than this factor get a logarithmic y axis."""


def log_y_if_wide(axes, values: pd.Series) -> None:
    """A log y axis when the plotted values span more than :data:`LOG_SPAN` (q/k gradients
    of a random-init model far below v/o; lambda_max of one regime thousands of times
    another's), so small curves are not flattened at zero. Values of both signs (a
    negative lambda_max at random init) get a symmetric log axis, linear within the
    smallest nonzero magnitude."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    mags = v.abs()[v != 0]
    if not len(mags) or mags.max() / mags.min() <= LOG_SPAN:
        return
    for ax in np.ravel(axes):
        if (v > 0).all():
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=float(mags.min()))
