# SPDX-License-Identifier: MIT
"""The tables of one or more run directories, read for a report (never a model).

:func:`load_runs` reads every known table (:data:`TABLES`) of every run and concatenates
them per table name, with a ``run`` column saying where a row came from. An unreadable,
empty or too old table (one lacking a :data:`REQUIRED` column) is skipped with a one-line
note; nothing here raises for a run that simply lacks a study.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from thoughtgrad.errors import UserError
from thoughtgrad.runs.store import RunDir

TABLES = ("spectra", "spectra_failed", "spectra_samples", "accuracy", "errors", "dynamics",
          "layer_grad_norms", "surprisal", "scale")
SPECTRA_REQUIRED = ("sample_id", "layer", "role")
REQUIRED = {"spectra": SPECTRA_REQUIRED, "spectra_samples": ("sample_id", "source", "mean_nuclear"),
            "spectra_failed": ("sample_id", "source", "reason"),
            "accuracy": ("regime", "k", "correct"),
            "errors": ("regime", "k", "error_kind", "count"), "dynamics": ("regime", "step"),
            "surprisal": ("condition", "surprisal_bits"), "scale": ("knob", "accuracy")}
"""Columns without which a run's table is skipped (with a note) before tables are joined."""


@dataclass
class Runs:
    """The tables of one or more run directories, concatenated per table name."""

    paths: list[Path]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    manifests: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _run_name(path: Path, taken: set[str]) -> str:
    name = path.resolve().name or str(path)
    base, i = name, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def load_runs(paths: Sequence[str | os.PathLike[str]]) -> Runs:
    """Read every known table of every run; unreadable or absent tables become notes."""
    if not paths:
        raise UserError("give at least one run directory")
    runs = Runs(paths=[Path(p) for p in paths])
    parts: dict[str, list[pd.DataFrame]] = {}
    for path in runs.paths:
        run = RunDir.open(path)
        name = _run_name(path, set(runs.manifests))
        try:
            runs.manifests[name] = run.manifest()
        except UserError as exc:
            runs.manifests[name] = {}
            runs.notes.append(str(exc))
        found = []
        for table in TABLES:
            if not run.has_table(table):
                continue
            try:
                df = run.read(table, notes=runs.notes)
            except Exception as exc:  # noqa: BLE001 - a corrupt file is a note, not a crash
                runs.notes.append(f"{run.table_path(table)}: unreadable ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''})")
                continue
            found.append(table)
            missing = [c for c in REQUIRED.get(table, ()) if c not in df.columns]
            if missing:
                runs.notes.append(f"{run.table_path(table)}: skipped, lacks column(s) "
                                  f"{', '.join(missing)} (older format?)")
                continue
            if df.empty:
                runs.notes.append(f"{run.table_path(table)}: table is empty")
                continue
            parts.setdefault(table, []).append(df.assign(run=name))
        if not found:
            runs.notes.append(f"{path}: no tables found (expected one of {', '.join(TABLES)})")
    if not parts and not any(m for m in runs.manifests.values()):
        where = ", ".join(str(p) for p in runs.paths)
        raise UserError(f"{where}: no run directory here (no manifest.json and no tables of "
                        f"{', '.join(TABLES)})")
    for table, dfs in parts.items():
        runs.tables[table] = pd.concat(dfs, ignore_index=True)
    return runs
