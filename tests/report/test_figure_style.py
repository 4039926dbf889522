# SPDX-License-Identifier: MIT
"""The shared figure style: series distinguishable without colour."""

from __future__ import annotations

from thoughtgrad.report import figure_style


def test_series_styles_differ_by_marker_and_line() -> None:
    styles = [figure_style.series_style(i) for i in range(7)]  # seven roles q k v o gate up down
    assert len({s["marker"] for s in styles}) == 7
    assert len({str(s["linestyle"]) for s in styles}) == 7


def test_log_y_if_wide_picks_the_axis_by_span() -> None:
    import pandas as pd

    from thoughtgrad.report.figure_style import log_y_if_wide, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 3)
    log_y_if_wide([axes[0]], pd.Series([0.4, 12.0, 6000.0]))  # > 100x, positive
    log_y_if_wide([axes[1]], pd.Series([-3.0, 0.5, 900.0]))  # > 100x, both signs
    log_y_if_wide([axes[2]], pd.Series([1.0, 50.0, float("nan")]))  # < 100x
    assert [ax.get_yscale() for ax in axes] == ["log", "symlog", "linear"]
    plt.close(fig)
