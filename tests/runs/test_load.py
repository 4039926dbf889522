# SPDX-License-Identifier: MIT
"""Reading runs for a report: older labels are read under today's names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from thoughtgrad.errors import UserError
from thoughtgrad.experiments.dynamics import DynamicsConfig
from thoughtgrad.runs.load import load_runs
from thoughtgrad.runs.store import RunDir


def _run(path: Path, command: str, tables: dict[str, pd.DataFrame], **manifest) -> Path:
    run = RunDir.create(path, command=command, **manifest)
    for name, df in tables.items():
        run.write(name, df)
    run.set_status("completed")
    return run.path


def _dyn(*regimes: str) -> pd.DataFrame:
    return pd.DataFrame([{"regime": r, "step": s, "loss": 1.0} for r in regimes for s in (0, 1)])


def test_an_old_dynamics_run_reads_its_direct_regime_as_half(tmp_path: Path) -> None:
    old = _run(tmp_path / "dyn", "train", {
        "dynamics": _dyn("cot", "direct"),
        "surprisal": pd.DataFrame({"condition": ["direct"], "surprisal_bits": [1.0]})},
        dynamics_cot={"samples": 2}, dynamics_direct={"samples": 2})
    surp = _run(tmp_path / "surp", "surprisal", {
        "surprisal": pd.DataFrame({"condition": ["direct", "cot"], "surprisal_bits": [1.0, 2.0]})},
        surprisal={"direct": {"regime": "direct", "condition": None}, "cot": {"regime": "cot"}})
    toy = _run(tmp_path / "toy", "toy", {"accuracy": pd.DataFrame(
        {"regime": ["direct", "cot"], "k": [2, 2], "correct": [True, False]})})
    runs = load_runs([old, surp, toy])
    assert set(runs.tables["dynamics"]["regime"]) == {"cot", "half"}
    by_run = runs.tables["surprisal"].groupby("run")["condition"].apply(set).to_dict()
    assert by_run == {"dyn": {"half"}, "surp": {"half", "cot"}}
    # the toy lab's direct is a bare answer: left alone
    assert set(runs.tables["accuracy"]["regime"]) == {"direct", "cot"}


def test_direct_labels_of_other_producers_stay(tmp_path: Path) -> None:
    # a Trainer-callback run labelled by its user, and a surprisal condition named direct
    # that measured the answer-only regime: no manifest says half the steps
    cb = _run(tmp_path / "cb", "callback", {"dynamics": _dyn("direct")})
    surp = _run(tmp_path / "surp", "surprisal", {
        "surprisal": pd.DataFrame({"condition": ["direct"], "surprisal_bits": [1.0]})},
        surprisal={"direct": {"regime": "answer", "condition": "direct"}})
    runs = load_runs([cb, surp])
    assert set(runs.tables["dynamics"]["regime"]) == {"direct"}
    assert set(runs.tables["surprisal"]["condition"]) == {"direct"}


def test_the_old_regime_name_is_refused_with_its_new_name() -> None:
    with pytest.raises(UserError, match="now called 'half'"):
        DynamicsConfig(model="m", regime="direct")
