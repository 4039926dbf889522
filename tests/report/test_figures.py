# SPDX-License-Identifier: MIT
"""Figures: written as PNG + PDF, non-blank, series distinguishable without colour, user
conditions in their own panels, integer layer ticks, legends and titles clear of the
panels, the test-time knobs side by side per task (checked against the scale rows)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from report_fixtures import knob_rows, make_run, make_spectra, make_toy_tables

from thoughtgrad.report import figures
from thoughtgrad.report.compare import CompareConfig, compare_runs
from thoughtgrad.report.studies import scale_by_k


def test_series_styles_differ_by_marker_and_line() -> None:
    styles = [figures._style(i) for i in range(7)]  # seven roles q k v o gate up down
    assert len({s["marker"] for s in styles}) == 7
    assert len({str(s["linestyle"]) for s in styles}) == 7


def test_render_all_writes_png_and_pdf(tmp_path: Path) -> None:
    runs = [make_run(tmp_path, "c", {"spectra": make_spectra("correct", n_samples=3),
                                     **make_toy_tables()}),
            make_run(tmp_path, "i", {"spectra": make_spectra("irrelevant", n_samples=3)})]
    comp = compare_runs(runs, CompareConfig(n_boot=20, metrics=("nuclear",)))
    out = figures.render_all(comp, tmp_path / "fig")
    assert set(out) == {"spectra", "separation", "toy", "dynamics", "surprisal", "scale"}
    assert not [n for n in comp.notes if n.startswith("figure")]
    for paths in out.values():
        for png in paths:
            assert png.with_suffix(".pdf").stat().st_size > 1000
            img = mpimg.imread(png)
            assert img.shape[0] > 200 and img.shape[1] > 300
            assert np.std(img[..., :3]) > 0.05  # not blank


@pytest.fixture
def saved(monkeypatch):
    """The matplotlib figures the renderers save, kept open for inspection."""
    figs = []
    real = figures._save

    def keep(fig, out_dir, name):
        fig.canvas.draw()
        figs.append(fig)
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / f"{name}.png"
        fig.savefig(png, dpi=40)
        return png

    monkeypatch.setattr(figures, "_save", keep)
    yield figs
    del real
    import matplotlib.pyplot as plt

    plt.close("all")


def _layout_ok(fig) -> None:
    """Legend below every panel and the title above them: no overlap."""
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    bottom = min(ax.get_window_extent(renderer).y0 for ax in axes)
    top = max(ax.get_tightbbox(renderer).y1 for ax in axes)
    for legend in fig.legends:
        assert legend.get_window_extent(renderer).y1 <= bottom + 1
    if fig._suptitle is not None:
        assert fig._suptitle.get_window_extent(renderer).y0 >= top - 1


def test_user_conditions_get_their_own_panels_and_integer_layer_ticks(tmp_path, saved):
    a = make_spectra("correct", n_samples=3, n_layers=5, roles=("q", "k"))
    b = make_spectra("correct", n_samples=3, n_layers=5, roles=("q", "k"), seed=9)
    a["condition"], b["condition"] = "A", "B"  # two user labels on files with one stem
    comp = compare_runs([make_run(tmp_path, "u", {"spectra": pd.concat([a, b])})],
                        CompareConfig(n_boot=10, metrics=("nuclear",)))
    assert "condition" in comp.keys
    figures.spectra_panels(comp.tables["spectra_curves"], comp.keys, "nuclear", tmp_path)
    (fig,) = saved
    titles = sorted(ax.get_title() for ax in fig.axes)
    assert titles == sorted(f"{lv} / correct / condition {c}" for lv in
                            ("none", "simplified", "detailed") for c in "AB")
    for ax in fig.axes:
        assert len(ax.get_lines()) == 2  # q and k
        for line in ax.get_lines():
            x = np.asarray(line.get_xdata(), dtype=float)
            assert (np.diff(x) > 0).all()  # one point per layer: no merged zigzag
        ticks = [t for t in ax.get_xticks() if 0 <= t <= 4]
        assert ticks and all(float(t).is_integer() for t in ticks)
    _layout_ok(fig)


def test_every_figure_keeps_legend_and_title_clear(tmp_path, saved):
    runs = [make_run(tmp_path, "c", {"spectra": make_spectra("correct", n_samples=3),
                                     **make_toy_tables()}),
            make_run(tmp_path, "i", {"spectra": make_spectra("irrelevant", n_samples=3)})]
    comp = compare_runs(runs, CompareConfig(n_boot=10, metrics=("nuclear",)))
    figures.render_all(comp, tmp_path / "fig")
    assert len(saved) >= 7
    for fig in saved:
        _layout_ok(fig)


def test_knobs_are_one_figure_per_task_with_a_panel_per_k(tmp_path, saved):
    scale = knob_rows(np.random.default_rng(0))
    other = scale.assign(task="fold")
    paths = figures.scale_chart(pd.concat([scale, other]), tmp_path)
    assert [p.name for p in paths] == ["scale_addition.png", "scale_fold.png"]
    fig = saved[0]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in panels) == sorted(
        [f"K = {k}" for k in range(2, 7)] + ["K = 7 (out of distribution)",
                                             "K = 8 (out of distribution)"])
    for ax in panels:
        assert ax.get_xscale() == "log"
        assert {ln.get_label() for ln in ax.get_lines()} == {
            "parameters", "tokens", "samples cot-L1", "samples direct-L1", "loops"}
        k = int(ax.get_title().split()[2])
        (params,) = [ln for ln in ax.get_lines() if ln.get_label() == "parameters"]
        want = scale[(scale.knob == "parameters") & (scale.k == k)].sort_values("n")
        np.testing.assert_allclose(params.get_xdata(), want["compute_flops"])
        np.testing.assert_allclose(params.get_ydata(), 100 * want["accuracy"])
    _layout_ok(fig)


def test_scale_by_k_pivot_against_pandas() -> None:
    scale = knob_rows(np.random.default_rng(1))
    pivot = scale_by_k(scale)
    assert list(pivot.columns[:2]) == ["task", "k"] and len(pivot) == 7
    assert set(pivot.columns[2:]) == {"loops [r=4]", "parameters [L=4]", "samples cot-L1 [n=8]",
                                      "samples direct-L1 [n=8]", "tokens [L=1]"}
    for k in range(2, 9):
        row = pivot[pivot.k == k].iloc[0]
        at = scale[scale.k == k]
        assert row["parameters [L=4]"] == at[(at.knob == "parameters") & (at.n == 4)][
            "accuracy"].item()
        assert row["samples direct-L1 [n=8]"] == at[(at.knob == "samples") & (at.n == 8) & (
            at.model == "direct-L1")]["accuracy"].item()
        assert row["loops [r=4]"] == at[(at.knob == "loops") & (at.n == 4)]["accuracy"].item()
