# SPDX-License-Identifier: MIT
"""Render DataFrames as Markdown, LaTeX (booktabs) and escaped HTML tables, and save them.

Numbers are formatted with ``FLOAT_FORMAT`` significant digits; NaN prints as an em dash
("no value", e.g. an interval from a single sample). Every cell and header that reaches
HTML goes through ``html.escape``; LaTeX special characters are escaped too.
"""

from __future__ import annotations

import html
import math
import numbers
from pathlib import Path

import pandas as pd

FLOAT_FORMAT = ".4g"
LONG_TEXT = 60  # cells longer than this (text excerpts) get class "long": a wider column
NAN_TEXT = "—"
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}"}


def fmt(value: object) -> str:
    """One cell as text: floats to ``FLOAT_FORMAT``, NaN/None to an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NAN_TEXT
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        return NAN_TEXT if math.isnan(v) else format(v, FLOAT_FORMAT)
    try:
        if pd.isna(value):
            return NAN_TEXT
    except (TypeError, ValueError):
        pass
    return str(value)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
    def cell(v: object) -> str:
        return fmt(v).replace("|", r"\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "| " + " | ".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---"
                             for c in df.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |"
            for row in df.itertuples(index=False, name=None)]
    return "\n".join([head, rule, *body]) + "\n"


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(df: pd.DataFrame, *, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs ``tabular`` (``\\toprule``, ``\\midrule``, ``\\bottomrule``) in a table
    float; needs ``\\usepackage{booktabs}``."""
    align = "".join("r" if pd.api.types.is_numeric_dtype(df[c]) else "l" for c in df.columns)
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{latex_escape(label)}}}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
              " & ".join(latex_escape(str(c)) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(fmt(v)) for v in row) + r" \\"
              for row in df.itertuples(index=False, name=None)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_html(df: pd.DataFrame, *, max_rows: int | None = 200) -> str:
    """An escaped ``<table>``; longer tables are cut to ``max_rows`` with a note row."""
    shown = df if max_rows is None or len(df) <= max_rows else df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for row in shown.itertuples(index=False, name=None):
        cells = "".join(
            f'<td class="num">{html.escape(fmt(v))}</td>' if isinstance(v, numbers.Number)
            else f'<td class="long">{html.escape(fmt(v))}</td>' if len(fmt(v)) > LONG_TEXT
            else f"<td>{html.escape(fmt(v))}</td>" for v in row)
        rows.append(f"<tr>{cells}</tr>")
    if len(shown) < len(df):
        rows.append(f'<tr><td colspan="{len(df.columns)}">… {len(df) - len(shown)} more rows '
                    "in the CSV file</td></tr>")
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}' \
           "</tbody></table>"


def save_table(df: pd.DataFrame, out_dir: str | Path, name: str, *,
               caption: str | None = None) -> list[Path]:
    """Write ``name.csv`` (full precision), ``name.md`` and ``name.tex``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.csv", out / f"{name}.md", out / f"{name}.tex"]
    df.to_csv(paths[0], index=False)
    paths[1].write_text(to_markdown(df), encoding="utf-8")
    paths[2].write_text(to_latex(df, caption=caption, label=f"tab:{name}"), encoding="utf-8")
    return paths


CAPTIONS = {
    "spectra_curves": "Mean over samples and 95% bootstrap interval, per condition, role, layer.",
    "spectra_mad": "Mean absolute difference (MAD) between adjacent layers of the mean curve.",
    "spectra_reldiff": "Mean relative difference (a-b)/|b| between conditions' mean curves.",
    "separation": "Separation of irrelevant from correct responses: AUROC and Cohen's d.",
    "accuracy": "Toy lab accuracy per K and regime (fraction correct); gap = cot - direct.",
    "errors": "Toy lab failures per regime and K by error kind (counts).",
    "dynamics": "Training dynamics per regime (*_answer: the answer-only length control).",
    "dynamics_claims": "Seed 000's claims, cot vs half, under the full and the answer-only "
                       "loss.",
    "surprisal": "Per-token surprisal (bits) and Lemma 2 bounds per condition.",
    "scale": "Test-time compute: accuracy per knob and budget.",
    "scale_by_k": "Test-time compute: accuracy per K of each knob at its largest budget.",
    "spectra_failed": "Samples the spectra runner could not measure (still standing).",
    "top_samples": "Per condition, the samples with the largest mean nuclear norm.",
}


def save_all(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> dict[str, list[Path]]:
    """:func:`save_table` for every non-empty table; returns the written paths by name."""
    return {name: save_table(df, out_dir, name, caption=CAPTIONS.get(name))
            for name, df in tables.items() if not df.empty}
