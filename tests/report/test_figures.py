# SPDX-License-Identifier: MIT
"""Figures: written as PNG + PDF, non-blank, legends and titles clear of the panels, the
test-time knobs side by side per task (checked against the scale rows)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
from report_fixtures import knob_rows, layout_ok, make_run, make_spectra, make_toy_tables

from thoughtgrad.report import figures
from thoughtgrad.report.compare import CompareConfig, compare_runs
from thoughtgrad.report.studies import scale_by_k


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


def test_every_figure_keeps_legend_and_title_clear(tmp_path, saved):
    runs = [make_run(tmp_path, "c", {"spectra": make_spectra("correct", n_samples=3),
                                     **make_toy_tables()}),
            make_run(tmp_path, "i", {"spectra": make_spectra("irrelevant", n_samples=3)})]
    comp = compare_runs(runs, CompareConfig(n_boot=10, metrics=("nuclear",)))
    figures.render_all(comp, tmp_path / "fig")
    assert len(saved) >= 7
    for fig in saved:
        layout_ok(fig)


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
    layout_ok(fig)


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


def test_training_range_comes_from_each_groups_own_split() -> None:
    split = ["in_distribution"] * 3 + ["out_of_distribution"] * 4
    rows = pd.DataFrame({"k": range(2, 9), "split": split})  # trained on K 2..4
    assert figures.training_ks(rows) == [2, 3, 4]
    assert figures.training_ks(rows.drop(columns="split")) == [2, 3, 4, 5, 6]
