# SPDX-License-Identifier: MIT
"""The report's dynamics tables are the per-regime summary of ``report.dynamics_summary``
(answer-only controls included) and its claims, computed once."""

from __future__ import annotations

import numpy as np
import pandas as pd
from report_fixtures import make_run, make_toy_tables

from thoughtgrad.report.compare import CompareConfig, compare_runs
from thoughtgrad.report.dynamics_summary import claims, summarize


def _with_answer_control(dyn: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(dyn)
    return dyn.assign(loss_answer=rng.uniform(1, 3, n), grad_norm_answer=rng.uniform(1, 4, n),
                      cos_prev_answer=rng.uniform(-1, 1, n), spike_answer=rng.random(n) < 0.2,
                      lambda_max_answer=np.where(dyn["lambda_max"].notna(),
                                                 rng.uniform(5, 50, n), np.nan))


def test_dynamics_table_is_the_summary_with_its_answer_only_controls(tmp_path) -> None:
    dyn = _with_answer_control(make_toy_tables()["dynamics"])
    comp = compare_runs([make_run(tmp_path, "d", {"dynamics": dyn})], CompareConfig(n_boot=10))
    got = comp.tables["dynamics"]
    want = summarize(dyn.assign(run="d")).set_index("regime")
    assert got["regime"].tolist() == ["half", "cot"]  # the canonical regime order
    assert {"grad_norm_answer_mean", "spikes_answer", "cos_prev_answer_mean",
            "lambda_max_answer_mean"} <= set(got.columns)
    pd.testing.assert_frame_equal(got.set_index("regime"), want.loc[["half", "cot"],
                                                                     list(got.columns[1:])])
    pd.testing.assert_frame_equal(comp.tables["dynamics_claims"],
                                  claims(summarize(dyn.assign(run="d"))))
    assert set(comp.tables["dynamics_claims"]["loss"]) == {"full", "answer"}


def test_runs_without_the_control_show_no_answer_only_zeros(tmp_path) -> None:
    dyn = make_toy_tables()["dynamics"]
    comp = compare_runs([make_run(tmp_path, "d", {"dynamics": dyn})], CompareConfig(n_boot=10))
    assert not [c for c in comp.tables["dynamics"].columns if "answer" in c]
    assert set(comp.tables["dynamics_claims"]["loss"]) == {"full"}


def test_two_runs_are_summarised_and_judged_apart(tmp_path) -> None:
    """A toy run and a trained-LM run in one report: each run's own summary, claims and
    figure; pooling them by regime would mix two models' gradient norms."""
    from thoughtgrad.report.figures import dynamics_figure
    from thoughtgrad.report.seed_claims import dynamics_rows

    a = _with_answer_control(make_toy_tables()["dynamics"], seed=1)
    b = _with_answer_control(make_toy_tables()["dynamics"], seed=2)
    b = b.assign(grad_norm=np.where(b["regime"] == "cot", 100.0, 1.0))  # cot far above half
    comp = compare_runs([make_run(tmp_path, "toy", {"dynamics": a}),
                         make_run(tmp_path, "lm", {"dynamics": b})], CompareConfig(n_boot=10))
    got, cl = comp.tables["dynamics"], comp.tables["dynamics_claims"]
    assert got["run"].tolist() == ["toy", "toy", "lm", "lm"]
    for run, dyn in (("toy", a), ("lm", b)):
        want = summarize(dyn.assign(run=run)).set_index("regime")
        mine = got[got["run"] == run].drop(columns="run").set_index("regime")
        pd.testing.assert_frame_equal(mine, want.loc[["half", "cot"], list(mine.columns)])
        pd.testing.assert_frame_equal(cl[cl["run"] == run].drop(columns="run")
                                      .reset_index(drop=True),
                                      claims(summarize(dyn.assign(run=run))))
    lm = cl[(cl["run"] == "lm") & (cl["claim"] == "grad_norm_mean") & (cl["loss"] == "full")]
    assert lm["ratio"].item() == 100.0
    row = next(r for r in dynamics_rows(cl) if r["claim"] == "grad_norm_mean")
    assert "toy: full loss ratio" in row["measured"] and "lm: full loss ratio" in row["measured"]
    assert row["verdict"] == "does not hold"  # the lm run's 100x decides: the weakest run
    paths = dynamics_figure(pd.concat([a.assign(run="toy"), b.assign(run="lm")]), tmp_path)
    assert [p.stem for p in paths] == ["dynamics_toy", "dynamics_lm"]
