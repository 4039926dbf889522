# SPDX-License-Identifier: MIT
"""Grids and claims in a report: a grid directory read as its cells, models named with their
quantisation, and the claims tables and their HTML section (reads manifests and tables only).

* :func:`expand_grids` - a ``thoughtgrad grid`` directory (manifest ``command: grid``)
  stands for the spectra runs of its cells; other paths are kept as given.
* :func:`model_labels` - per ``model`` value of the rows: its kind (instruct / base, from
  the manifest's ``model_kind``) and its display name, with the GGUF file and quantisation
  when the manifest records them (``model_provenance`` / ``quantization``; absent: the
  model's last path part).
* :func:`add_claims` - the comparison's ``claims`` (seeds 001 / 002) and ``seed_claims``
  (all five seeds) tables; :func:`claims_html` - the report's opening section.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from thoughtgrad.report import tables
from thoughtgrad.report.claims import (
    BEYOND_LOSS_RULE,
    CLAIMS,
    CONTROL_TITLES,
    claims_table,
)
from thoughtgrad.report.seed_claims import claims_across_seeds

Comparison = Any
"""A :class:`thoughtgrad.report.compare.Comparison` (not imported: compare imports this
module, and the import-order test counts type-only imports too)."""

SECTION_TITLES = {"claims-spectra": "the claims of seeds 001 / 002", "dynamics":
                  "Training dynamics", "toy": "Toy CoT lab", "scale": "Test-time compute",
                  "spectra": "Layer spectra"}


def _manifest(path: Path) -> dict[str, Any]:
    p = path / "manifest.json"
    try:
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}  # the run loader reports an unreadable manifest


def expand_grids(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Each grid directory replaced by its cells' run directories (those that exist, in
    the manifest's order); other paths unchanged."""
    out: list[Path] = []
    for p in map(Path, paths):
        m = _manifest(p)
        if m.get("command") != "grid":
            out.append(p)
            continue
        cells = [p / str(c["path"]) for c in m.get("cells", []) if isinstance(c, dict)
                 and c.get("path") and (p / str(c["path"])).is_dir()]
        out.extend(cells or [p])
    return out


def _quantisation(m: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(GGUF file name, quantisation type) from a manifest, tolerant of their absence."""
    prov = m.get("model_provenance")
    prov = prov if isinstance(prov, Mapping) else {}
    quant = m.get("quantization") or m.get("quantisation")
    if isinstance(quant, Mapping):
        quant = quant.get("type") or quant.get("name")
    quant = quant or prov.get("quantization") or prov.get("quantisation") or \
        prov.get("quantization_type") or prov.get("type")
    name = prov.get("gguf_file") or prov.get("gguf") or prov.get("file") or prov.get("name")
    return (str(Path(str(name)).name) if name else None), (str(quant) if quant else None)


def model_labels(manifests: Mapping[str, Mapping[str, Any]]
                 ) -> tuple[dict[str, str], dict[str, str]]:
    """``(kinds, names)`` keyed by the ``model`` value of the rows (the manifest's
    ``model``); a random-init run names the same model (its rows say ``init=random``)."""
    kinds: dict[str, str] = {}
    names: dict[str, str] = {}
    for m in manifests.values():
        model = m.get("model") or (m.get("config") or {}).get("model")
        if not model:
            continue
        model = str(model)
        if m.get("model_kind") in ("instruct", "base"):
            kinds[model] = str(m["model_kind"])
        gguf, quant = _quantisation(m)
        base = gguf or Path(model.rstrip("/")).name or model
        names[model] = f"{base} ({quant} dequantised)" if quant else base
    return kinds, names


def add_claims(comp: Comparison) -> None:
    """Put ``claims`` (when spectra rows exist) and ``seed_claims`` on the comparison."""
    raw = comp.runs.tables.get("spectra")
    if raw is not None and {"nuclear", "source", "layer", "role"} <= set(raw.columns):
        kinds, names = model_labels(comp.runs.manifests)
        try:
            comp.tables["claims"] = claims_table(raw, kinds=kinds, names=names,
                                                 seed=comp.config.seed)
        except (KeyError, ValueError) as exc:  # an odd table is a note, not a crash
            comp.notes.append(f"claims: not computed ({type(exc).__name__}: {exc})")
    comp.tables["seed_claims"] = claims_across_seeds(comp.tables, comp.runs.tables)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def claims_html(comp: Comparison) -> str:
    """The report's opening section: every seed's claims with links to their sections,
    then the seed 001 / 002 claims per model under each control."""
    seeds = comp.tables.get("seed_claims")
    if seeds is None or seeds.empty:
        return ""
    head = "".join(f"<th>{_e(c)}</th>" for c in seeds.columns)
    body = []
    for row in seeds.itertuples(index=False):
        cells = []
        for col, value in zip(seeds.columns, row, strict=True):
            if col == "section":
                title = SECTION_TITLES.get(str(value), str(value))
                cells.append(f'<td><a href="#{_e(value)}">{_e(title)}</a></td>')
            else:
                cls = ' class="long"' if len(str(value)) > tables.LONG_TEXT else ""
                cells.append(f"<td{cls}>{_e(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    out = ["<h2 id=\"claims\">Claims across the five seeds</h2>",
           "<p>Each claim in its seed's words, what these runs measured, under which "
           "control, and a plain verdict (holds / holds only with the mean loss / does not "
           "hold / not measurable here). Verdicts are decided from the intervals by "
           "fixed rules (below), never from a source's numbers.</p>",
           f'<div class="scroll"><table class="data"><thead><tr>{head}</tr></thead>'
           f"<tbody>{''.join(body)}</tbody></table></div>"]
    claims = comp.tables.get("claims")
    out.append("<h3 id=\"claims-spectra\">Seeds 001 / 002: the layer-gradient claims per "
               "model and control</h3>")
    if claims is None or claims.empty:
        out.append("<p>Not measured in these runs (no spectra rows).</p>")
        return "".join(out)
    shown = claims.drop(columns=["value", "lo", "hi", "n"], errors="ignore")
    rules = "".join(f"<li><b>({_e(c.key)})</b> {_e(c.rule)}</li>" for c in CLAIMS)
    out.append(
        "<p>Figures: per-sample statistics with a 95 % bootstrap interval and n. (a), (b), "
        "(d): geometric-mean ratio of paired samples (same sample id, two conditions); (c), "
        "(e): AUROC irrelevant-above-correct of the sample's mean nuclear norm (centred per "
        "dataset), beside the loss-only AUROC of the sample's mean loss: "
        f"{_e(BEYOND_LOSS_RULE)} - a gradient statistic that separates no better than the "
        "loss adds nothing; (f): early-minus-late third |log(irrelevant / correct)|. "
        f"Controls: {_e(', '.join(CONTROL_TITLES.values()))}; the sum loss is derived from "
        "the mean-loss run (n_tokens x each singular value). A pattern that also holds at "
        f"random init needs no training.</p><ul>{rules}</ul>")
    out.append(f'<div class="scroll">{tables.to_html(shown, max_rows=None)}</div>')
    return "".join(out)

