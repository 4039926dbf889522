# SPDX-License-Identifier: MIT
"""The shared figure style: series distinguishable without colour."""

from __future__ import annotations

from thoughtgrad.report import figure_style


def test_series_styles_differ_by_marker_and_line() -> None:
    styles = [figure_style.series_style(i) for i in range(7)]  # seven roles q k v o gate up down
    assert len({s["marker"] for s in styles}) == 7
    assert len({str(s["linestyle"]) for s in styles}) == 7
