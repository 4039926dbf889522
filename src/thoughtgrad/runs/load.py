# SPDX-License-Identifier: MIT
"""The tables of one or more run directories, read for a report (never a model).

:func:`load_runs` reads every known table (:data:`TABLES`) of every run and concatenates
them per table name, with a ``run`` column saying where a row came from. An unreadable,
empty or too old table (one lacking a :data:`REQUIRED` column) is skipped with a one-line
note; nothing here raises for a run that simply lacks a study. Labels an older version
wrote are read under today's names (:func:`legacy_labels`).
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


OLD_HALF, HALF = "direct", "half"
"""The dynamics study's half-the-steps regime was called ``direct`` before it was named
``half`` (``direct`` now always means a bare answer, as in the toy lab)."""
DYNAMICS_TABLES = ("dynamics", "layer_grad_norms", "dynamics_failed")
SURPRISAL_TABLES = ("surprisal", "surprisal_samples", "surprisal_failed")


def _old_half_surprisal(manifest: dict) -> bool:
    """Whether this run's ``direct`` surprisal condition is the dynamics study's old
    ``direct`` regime (half the steps), as its manifest tells: a dynamics run (the demo
    measures each fine-tuned regime under its name), the condition's recorded settings, or
    an older surprisal manifest that recorded the command's options."""
    if f"dynamics_{OLD_HALF}" in manifest:
        return True
    settings = manifest.get("surprisal")
    if isinstance(settings, dict) and isinstance(settings.get(OLD_HALF), dict):
        return settings[OLD_HALF].get("regime") == OLD_HALF
    config = manifest.get("config")
    return (manifest.get("command") == "surprisal" and isinstance(config, dict)
            and config.get("regime") == OLD_HALF and not config.get("condition"))


def legacy_labels(table: str, df: pd.DataFrame, manifest: dict) -> pd.DataFrame:
    """``df`` with the labels of an older version renamed: the dynamics study's ``direct``
    regime (half the reasoning steps) becomes ``half`` in its dynamics tables when the
    manifest shows a dynamics run (``dynamics_direct``), and in its surprisal tables when
    the manifest shows the condition measured that regime. The toy lab's ``direct`` (a
    bare answer; ``accuracy``, ``errors``, ``scale``) is left alone."""
    if table in DYNAMICS_TABLES and f"dynamics_{OLD_HALF}" in manifest:
        column = "regime"
    elif table in SURPRISAL_TABLES and _old_half_surprisal(manifest):
        column = "condition"
    else:
        return df
    if column not in df.columns or not (df[column] == OLD_HALF).any():
        return df
    return df.assign(**{column: df[column].replace(OLD_HALF, HALF)})


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
            df = legacy_labels(table, df, runs.manifests[name])
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
