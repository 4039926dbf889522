# SPDX-License-Identifier: MIT
"""Spectra figures: user conditions in their own panels, one point per layer, integer layer
ticks, legend and title clear of the panels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from report_fixtures import layout_ok, make_run, make_spectra

from thoughtgrad.report import spectra_figures
from thoughtgrad.report.compare import CompareConfig, compare_runs


def test_user_conditions_get_their_own_panels_and_integer_layer_ticks(tmp_path, saved):
    a = make_spectra("correct", n_samples=3, n_layers=5, roles=("q", "k"))
    b = make_spectra("correct", n_samples=3, n_layers=5, roles=("q", "k"), seed=9)
    a["condition"], b["condition"] = "A", "B"  # two user labels on files with one stem
    comp = compare_runs([make_run(tmp_path, "u", {"spectra": pd.concat([a, b])})],
                        CompareConfig(n_boot=10, metrics=("nuclear",)))
    assert "condition" in comp.keys
    spectra_figures.spectra_panels(comp.tables["spectra_curves"], comp.keys, "nuclear", tmp_path)
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
    layout_ok(fig)
