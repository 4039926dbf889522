# SPDX-License-Identifier: MIT
"""One self-contained, offline ``report.html`` for one or more run directories.

Figures are inlined as base64 PNG, CSS and the simulator's plain JavaScript are inline;
the page loads nothing from the network. Every string that comes from a table, a
manifest or a file name goes through ``html.escape`` (``tables.to_html`` does the cells).
Sections appear per study present; what cannot be shown is listed under "Notes".
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from thoughtgrad.errors import UserError
from thoughtgrad.report import figures as figs
from thoughtgrad.report import tables
from thoughtgrad.report.compare import TOP_SAMPLES, CompareConfig, Comparison, compare_runs
from thoughtgrad.report.grid_report import claims_html
from thoughtgrad.report.simulator import simulator_html

log = logging.getLogger(__name__)

MAX_HTML_ROWS = 150
MANIFEST_FIELDS = ("command", "status", "model", "model_id", "data", "seed", "created",
                   "updated")
CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 70em;
       padding: 0 1em; color: #111; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #999; margin-top: 2em; }
table.data { border-collapse: collapse; font-size: 0.82em; margin: 0.6em 0 1.2em; }
table.data th, table.data td { border: 1px solid #bbb; padding: 0.15em 0.45em; }
table.data th { background: #eee; } td.num { text-align: right;
       font-variant-numeric: tabular-nums; } table.data td { vertical-align: top; }
table.data td:not(.long) { white-space: nowrap; } td.long { min-width: 24em; }
.scroll { overflow-x: auto; } figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #333; }
.notes li { margin: 0.2em 0; } code, pre { font-size: 0.85em; }
pre { background: #f5f5f5; padding: 0.6em; overflow-x: auto; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(path.name)} (PDF beside it in the figures folder)</figcaption>"
            "</figure>")


def _table(title: str, df: pd.DataFrame, note: str = "") -> str:
    extra = f"<p>{_e(note)}</p>" if note else ""
    return (f"<h3>{_e(title)}</h3>{extra}<div class=\"scroll\">"
            f"{tables.to_html(df, max_rows=MAX_HTML_ROWS)}</div>")


def _manifest_section(comp: Comparison) -> str:
    parts = ["<h2 id=\"runs\">Runs</h2>"]
    for name, path in zip(comp.runs.manifests, comp.runs.paths, strict=False):
        m = comp.runs.manifests[name]
        rows = [("run directory", str(path))]
        rows += [(k, m[k]) for k in MANIFEST_FIELDS if k in m]
        cfg = m.get("config") if isinstance(m.get("config"), dict) else {}
        for k in ("model", "data", "seed", "init", "loss_reduction", "loss_span"):
            if k in cfg and k not in m:
                rows.append((f"config.{k}", cfg[k]))
        versions = m.get("versions") or {}
        if isinstance(versions, dict) and versions:
            rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
        body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v if isinstance(v, str) else json.dumps(v))}"
                       "</td></tr>" for k, v in rows)
        full = json.dumps(m, indent=2, default=str)
        parts.append(f"<h3>{_e(name)}</h3><table class=\"data\">{body}</table>"
                     f"<details><summary>full manifest</summary><pre>{_e(full)}</pre></details>")
    return "".join(parts)


def _spectra_section(comp: Comparison, fig: dict[str, list[Path]]) -> str:
    t = comp.tables
    if "spectra_curves" not in t:
        return ""
    out = ["<h2 id=\"spectra\">Layer spectra</h2>",
           "<p>Per condition, role and layer: the mean across samples with its 95% bootstrap "
           "interval (shaded). Curves for every metric are in <code>spectra_curves.csv</code>."
           "</p>"]
    out += [f"<p class=\"note\">{_e(n)}</p>" for n in comp.section_notes.get("spectra", [])]
    out += [_figure(p) for p in fig.get("spectra", [])]
    mad = t["spectra_mad"]
    out.append(_table("MAD between adjacent layers (all / early / middle / late thirds)", mad))
    if "spectra_reldiff" in t:
        out.append(_table("Relative difference between conditions, next to their controls",
                          t["spectra_reldiff"],
                          "mean_rel = mean over layers of (a - b) / |b|; rows that differ "
                          "only in loss_reduction / loss_span / init show how much of a "
                          "contrast is response length rather than reasoning."))
    if "separation" in t or fig.get("separation"):
        out.append("<h2 id=\"separation\">Correct vs irrelevant responses</h2>")
        out += [_figure(p) for p in fig.get("separation", [])]
        if "separation" in t:
            out.append(_table("Separation (AUROC with 95% bootstrap interval, Cohen's d)",
                              t["separation"], "AUROC = P(statistic of an irrelevant response "
                              "> that of a correct one); 0.5 is chance."))
    if "top_samples" in t:
        out.append("<h2 id=\"samples\">Samples whose gradients hit hardest</h2>")
        out.append(_table(f"Per condition, the {TOP_SAMPLES} samples with the largest mean "
                          "nuclear norm", t["top_samples"],
                          "mean_nuclear = mean over the sample's measured matrices of its "
                          "gradient's nuclear norm; max_layer / max_role = where it is "
                          "largest. Prompt and response are excerpts (the response's start "
                          "and end); answer = the loss-carrying text of an answer-span run."))
    if "spectra_failed" in t:
        out.append(_table("Samples that could not be measured", t["spectra_failed"],
                          "The latest failure of each sample not measured on a later "
                          "attempt; re-running the same command retries them."))
    return "".join(out)


def _toy_section(comp: Comparison, fig: dict[str, list[Path]]) -> str:
    t = comp.tables
    out = []
    if "accuracy" in t or "errors" in t:
        out.append("<h2 id=\"toy\">Toy CoT lab</h2>")
        out += [_figure(p) for p in fig.get("toy", [])]
        if "accuracy" in t:
            out.append(_table("Accuracy per K (fraction correct)", t["accuracy"]))
        if "errors" in t:
            out.append(_table("Error taxonomy (counts)", t["errors"]))
    out.append("<h2 id=\"simulator\">Serial-compute budget simulator</h2>")
    out.append(simulator_html())
    return "".join(out)


def _simple_section(comp: Comparison, fig: dict[str, list[Path]], key: str, title: str,
                    extra: tuple[tuple[str, str], ...] = ()) -> str:
    """A heading, the section's figures, its table and any ``(table, title)`` extras."""
    if key not in comp.tables and not fig.get(key):
        return ""
    out = [f"<h2 id=\"{key}\">{_e(title)}</h2>"]
    out += [_figure(p) for p in fig.get(key, [])]
    for name, heading in extra:
        if name in comp.tables:
            out.append(_table(heading, comp.tables[name]))
    if key in comp.tables:
        out.append(_table(title, comp.tables[key]))
    return "".join(out)


def build_html(comp: Comparison, fig: dict[str, list[Path]], *, title: str = "thoughtgrad report"
               ) -> str:
    """The whole page as one string."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    runs = ", ".join(_e(p) for p in comp.runs.paths)
    notes = comp.notes or ["nothing missing"]
    body = [
        f"<h1>{_e(title)}</h1><p>Runs: {runs}. Generated {_e(now)} from the runs' tables "
        "only; no model was loaded.</p>",
        claims_html(comp),
        "<h2 id=\"notes\">Notes</h2><ul class=\"notes\">"
        + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>",
        _spectra_section(comp, fig),
        _toy_section(comp, fig),
        _simple_section(comp, fig, "dynamics", "Training dynamics", (
            ("dynamics_claims", "Seed 000's claims, cot vs half (ratio = cot / half; "
                                "loss answer = the answer-only length control)"),)),
        _simple_section(comp, fig, "surprisal", "Surprisal and Lemma 2"),
        _simple_section(comp, fig, "scale", "Test-time compute", (
            ("scale_by_k", "Accuracy (fraction) per K of each knob at its largest budget"),)),
        _manifest_section(comp),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            + "".join(body) + "</body></html>\n")


def default_output(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """``RUN_DIR/report.html`` for one run, ``./report.html`` for several."""
    return Path(paths[0]) / "report.html" if len(paths) == 1 else Path("report.html")


def write_report(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str] | None
                 = None, cfg: CompareConfig | None = None) -> tuple[Path, Comparison]:
    """Compare the runs, draw the figures next to the page (``figures/``), write the page.

    Returns the page's path and the comparison (its ``notes`` say what was skipped).
    """
    target = Path(out) if out is not None else default_output(paths)
    if target.exists() and target.is_dir():
        target = target / "report.html"
    comp = compare_runs(paths, cfg)  # first: a missing run dir must not be created below
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{target.parent}: cannot create the output folder "
                        f"({exc.strerror or exc})") from None
    fig = figs.render_all(comp, target.parent / "figures")
    page = build_html(comp, fig)
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{target}: cannot write the report ({exc.strerror or exc})") from None
    return target, comp
