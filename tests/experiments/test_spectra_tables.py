# SPDX-License-Identifier: MIT
"""The spectra run's per-sample table (``spectra_samples``) against its ``spectra`` rows:
means, maxima, where the largest sits, and the text excerpts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from spectra_fixtures import COT, QUESTIONS

from thoughtgrad.experiments.spectra_config import SpectraConfig
from thoughtgrad.experiments.spectra_run import run_spectra
from thoughtgrad.experiments.spectra_tables import SAMPLE_COLUMNS
from thoughtgrad.runs.store import RunDir


def _cfg(model_dir, data, **kw) -> SpectraConfig:
    return SpectraConfig(model=str(model_dir), data=tuple(map(str, data)), device="cpu", **kw)


def test_per_sample_table_matches_the_spectra_rows(tmp_path, model_dir, data):
    long_q = "<b>Tom</b> " + QUESTIONS[0] + " " + "and more words " * 30
    f = data[1].parent / "long_with_cot.json"
    f.write_text(json.dumps([{"instruction": long_q, "input": "", "output": COT[0]},
                             {"instruction": QUESTIONS[1], "input": "", "output": COT[1]}]))
    run = RunDir.create(tmp_path / "run", command="spectra")
    run_spectra(_cfg(model_dir, [*data, f], limit=2), run)
    samples = run.read("spectra_samples")
    spec = run.read("spectra")
    assert list(samples.columns) == list(SAMPLE_COLUMNS)
    assert len(samples) == 6 and not samples.duplicated(["source", "sample_id"]).any()
    for row in samples.itertuples():
        rows = spec[(spec.source == row.source) & (spec.sample_id == row.sample_id)]
        top = rows.loc[rows["nuclear"].idxmax()]
        assert row.mean_nuclear == pytest.approx(float(np.mean(rows["nuclear"])), rel=1e-12)
        assert row.max_nuclear == pytest.approx(float(np.max(rows["nuclear"])), rel=1e-12)
        assert (row.max_layer, row.max_role) == (top["layer"], top["role"])
        assert row.n_tokens == rows["n_tokens"].iloc[0] and row.loss == rows["loss"].iloc[0]
    first = samples[(samples.source == "long_with_cot") & (samples.sample_id == 0)].iloc[0]
    assert first["prompt"].startswith("<b>Tom</b> Tom has 0 apples")
    assert len(first["prompt"]) <= 200 and first["prompt"].endswith("…")
    assert first["response"] == " ".join(COT[0].split())  # short: whole, whitespace folded


def test_a_sample_with_overflowed_gradients_keeps_its_rows(tmp_path, model_dir, data,
                                                           monkeypatch) -> None:
    """A gradient that overflows gives NaN singular values for every matrix of a sample;
    the run records them (the per-sample table has no largest matrix) instead of dying."""
    from thoughtgrad.experiments import spectra_run

    real = spectra_run._rows

    def overflowing(*args, **kwargs):
        frame = real(*args, **kwargs)
        frame.loc[frame["sample_id"] == 0, "nuclear"] = float("nan")
        return frame

    monkeypatch.setattr(spectra_run, "_rows", overflowing)
    run = RunDir.create(tmp_path / "run", command="spectra")
    run_spectra(_cfg(model_dir, data[:1], limit=2), run)
    samples = run.read("spectra_samples").set_index("sample_id")
    assert samples.loc[0, "max_layer"] is None or np.isnan(samples.loc[0, "max_layer"])
    assert np.isnan(samples.loc[0, "max_nuclear"]) and samples.loc[1, "max_nuclear"] > 0
    assert run.read("spectra")["sample_id"].nunique() == 2
