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


def _config(model: str, regime: str, seed: int, device: str = "cpu") -> dict:
    return {"model": model, "data": "gsm8k.json", "regime": regime, "device": device,
            "train": {"steps": 30, "seed": seed, "checkpoint_every": 5}, "probes": {}}


def test_two_studies_are_summarised_and_judged_apart(tmp_path) -> None:
    """A toy study written as one directory per regime (as the demo does) and a trained-LM
    study in one directory, in one report: each study's own summary, claims and figure;
    pooling them by regime would mix two models' gradient norms."""
    from thoughtgrad.report.figures import dynamics_figure
    from thoughtgrad.report.seed_claims import dynamics_rows

    a = _with_answer_control(make_toy_tables()["dynamics"], seed=1)
    b = _with_answer_control(make_toy_tables()["dynamics"], seed=2)
    b = b.assign(grad_norm=np.where(b["regime"] == "cot", 100.0, 1.0))  # cot far above half
    runs = [make_run(tmp_path, f"toy-{r}", {"dynamics": a[a["regime"] == r]},
                     **{f"dynamics_{r}": {"config": _config("toy", r, 0, device)}})
            for r, device in (("cot", "cpu"), ("half", "auto"))]  # device may differ
    runs.append(make_run(tmp_path, "lm", {"dynamics": b},
                         dynamics_cot={"config": _config("pkg:lm", "cot", 42)},
                         dynamics_half={"config": _config("pkg:lm", "half", 42)}))
    comp = compare_runs(runs, CompareConfig(n_boot=10))
    got, cl = comp.tables["dynamics"], comp.tables["dynamics_claims"]
    toy, lm = "toy (seed 0)", "pkg:lm (seed 42)"
    assert got["study"].tolist() == [toy, toy, lm, lm]
    for study, dyn in ((toy, a), (lm, b)):
        want = summarize(dyn).set_index("regime")
        mine = got[got["study"] == study].drop(columns="study").set_index("regime")
        pd.testing.assert_frame_equal(mine, want.loc[["half", "cot"], list(mine.columns)])
        pd.testing.assert_frame_equal(cl[cl["study"] == study].drop(columns="study")
                                      .reset_index(drop=True), claims(summarize(dyn)))
    mask = (cl["study"] == lm) & (cl["claim"] == "grad_norm_mean") & (cl["loss"] == "full")
    assert cl.loc[mask, "ratio"].item() == 100.0
    row = next(r for r in dynamics_rows(cl) if r["claim"] == "grad_norm_mean")
    assert f"{toy}: full loss cot / half = " in row["measured"]
    assert f"{lm}: full loss cot / half = 100 / 1 (ratio 100)" in row["measured"]
    assert row["verdict"] == "does not hold"  # the lm study's 100x decides: the weakest
    paths = dynamics_figure(comp.runs.tables["dynamics"], tmp_path)
    assert [p.stem for p in paths] == ["dynamics_1_toy_seed_0", "dynamics_2_pkg_lm_seed_42"]


def test_studies_differing_only_in_other_settings_get_numbered_labels() -> None:
    from thoughtgrad.report.studies import label_studies

    dyn = pd.DataFrame({"run": ["a", "b", "c"], "regime": ["cot", "cot", "cot"]})
    other = _config("m", "cot", 1)
    other["train"]["steps"] = 60
    got = label_studies(dyn, {"a": {"dynamics_cot": {"config": _config("m", "cot", 1)}},
                              "b": {"dynamics_cot": {"config": other}}, "c": {}})
    assert got["study"].tolist() == ["m (seed 1)", "m (seed 1) #2", "c"]


def test_dynamics_verdicts_read_the_values_not_a_ratio_through_zero_or_below() -> None:
    """25 spikes under cot and none under half is 'does not hold' (the ratio is undefined);
    a mean cosine of 0.15 under cot against -0.02 under half is 'more coherent' (the ratio,
    -7.5, is below 1); no spikes in either regime is not measurable."""
    from thoughtgrad.report.seed_claims import dynamics_rows

    def table(claim: str, full: tuple[float, float], answer: tuple[float, float]
              ) -> pd.DataFrame:
        return pd.DataFrame([{"claim": claim, "loss": loss, "cot": a, "half": b,
                              "ratio": a / b if b else np.nan}
                             for loss, (a, b) in (("full", full), ("answer", answer))])

    def verdict(t: pd.DataFrame, claim: str) -> str:
        return next(r for r in dynamics_rows(t) if r["claim"] == claim)["verdict"]

    assert verdict(table("spikes", (25, 0), (76, 0)), "spikes") == "does not hold"
    assert verdict(table("spikes", (0, 3), (0, 2)), "spikes") == "holds"
    assert verdict(table("spikes", (0, 0), (1, 0)), "spikes") == "not measurable here"
    cos = table("cos_prev_mean", (0.13, 0.12), (0.15, -0.02))
    assert verdict(cos, "cos_prev_mean") == "holds"
    assert "answer loss cot / half = 0.15 / -0.02" in next(
        r for r in dynamics_rows(cos) if r["claim"] == "cos_prev_mean")["measured"]
    lam = table("lambda_max_mean", (86, 99), (1414, 1055))
    assert verdict(lam, "lambda_max_mean") == "holds only with the full-response loss"
