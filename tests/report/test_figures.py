# SPDX-License-Identifier: MIT
"""Figures: written as PNG + PDF, non-blank, series distinguishable without colour."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
from report_fixtures import make_run, make_spectra, make_toy_tables

from thoughtgrad.report import figures
from thoughtgrad.report.compare import CompareConfig, compare_runs


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
