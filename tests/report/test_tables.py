# SPDX-License-Identifier: MIT
"""Markdown, LaTeX and HTML rendering of tables."""

from __future__ import annotations

import math

import pandas as pd

from thoughtgrad.report import tables


def test_markdown_latex_html() -> None:
    df = pd.DataFrame({"role": ["q", "a|b"], "mad_all": [0.123456, math.nan],
                       "note": ["<b>x</b> & 5% _y_", "ok"]})
    md = tables.to_markdown(df)
    assert md.splitlines()[1] == "| --- | ---: | --- |"
    assert r"a\|b" in md and "0.1235" in md and tables.NAN_TEXT in md
    tex = tables.to_latex(df, caption="MAD")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\& 5\% \_y\_" in tex and r"\textless{}b\textgreater{}" in tex
    page = tables.to_html(df)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt; &amp; 5%" in page
    assert "more rows" in tables.to_html(pd.DataFrame({"a": range(5)}), max_rows=2)
