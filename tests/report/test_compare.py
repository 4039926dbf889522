# SPDX-License-Identifier: MIT
"""compare.py on hand-made run directories, against direct numpy computations."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import make_run, make_spectra

from thoughtgrad.report.compare import (
    TOP_SAMPLES,
    CompareConfig,
    compare_runs,
    dataset_of,
    open_failures,
)

LAYERS = 5


def hand_table(rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """nuclear[kind][level] is an array (samples, layers) for role q; role k is 2x it."""
    rows, truth = [], {}
    for kind, level in itertools.product(("correct", "irrelevant"), ("none", "detailed")):
        n = 4 if kind == "correct" else 5
        vals = rng.integers(1, 9, size=(n, LAYERS)).astype(float)
        truth[kind, level] = vals
        for s, layer, (role, mult) in itertools.product(range(n), range(LAYERS),
                                                        (("q", 1.0), ("k", 2.0))):
            v = vals[s, layer] * mult
            suffix = "no_cot" if level == "none" else "with_cot_gpt4o"
            rows.append({"sample_id": s, "source": f"aqua_{suffix}",
                         "cot_level": level, "response_kind": kind, "layer": layer, "role": role,
                         "nuclear": v, "ratio": 0.5, "effective_rank": 3.0, "loss": 2.0})
    return pd.DataFrame(rows), truth


def pick(df: pd.DataFrame, **where: object) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for col, value in where.items():
        mask &= (df[col] == value).to_numpy()
    return df[mask]


def test_curves_mad_reldiff_auroc_against_numpy(tmp_path: Path) -> None:
    df, truth = hand_table(np.random.default_rng(1))
    run = make_run(tmp_path, "r", {"spectra": df})
    comp = compare_runs([run], CompareConfig(n_boot=50))
    curves = comp.tables["spectra_curves"]
    mad = comp.tables["spectra_mad"]
    for (kind, level), vals in truth.items():
        c = pick(curves, response_kind=kind, cot_level=level, role="q",
                 metric="nuclear").sort_values("layer")
        np.testing.assert_allclose(c["mean"], vals.mean(axis=0))
        assert (c["n"] == vals.shape[0]).all()
        assert (c["lo"] <= c["mean"] + 1e-12).all() and (c["mean"] <= c["hi"] + 1e-12).all()
        row = pick(mad, response_kind=kind, cot_level=level, role="q", metric="nuclear").iloc[0]
        m = vals.mean(axis=0)
        assert row["mad_all"] == pytest.approx(np.mean(np.abs(np.diff(m))))
        # 5 layers -> thirds [0,1] [2,3] [4]
        assert row["mad_early"] == pytest.approx(abs(m[1] - m[0]))
        assert row["mad_middle"] == pytest.approx(abs(m[3] - m[2]))
        assert np.isnan(row["mad_late"])
    rel = comp.tables["spectra_reldiff"].query(
        "factor == 'cot_level' and response_kind == 'correct' and role == 'q' "
        "and metric == 'nuclear'").iloc[0]
    a, b = truth["correct", "none"].mean(0), truth["correct", "detailed"].mean(0)
    assert rel["mean_rel"] == pytest.approx(np.mean((a - b) / np.abs(b)))
    sep = comp.tables["separation"]
    for level in ("none", "detailed"):
        row = sep.query("cot_level == @level and role == 'q'").iloc[0]
        pos = truth["irrelevant", level].mean(axis=1)  # per-sample mean over layers
        neg = truth["correct", level].mean(axis=1)
        pairs = [(1.0 if p > q else 0.5 if p == q else 0.0) for p in pos for q in neg]
        assert row["auroc"] == pytest.approx(np.mean(pairs))
        sp = np.sqrt(((len(pos) - 1) * pos.var(ddof=1) + (len(neg) - 1) * neg.var(ddof=1))
                     / (len(pos) + len(neg) - 2))
        assert row["cohens_d"] == pytest.approx((pos.mean() - neg.mean()) / sp)
        assert row["auroc_lo"] <= row["auroc"] <= row["auroc_hi"]
        # role "all" averages q and k (k = 2q) per sample
        row_all = sep.query("cot_level == @level and role == 'all'").iloc[0]
        pairs_all = [(1.0 if p > q else 0.5 if p == q else 0.0) for p in 1.5 * pos
                     for q in 1.5 * neg]
        assert row_all["auroc"] == pytest.approx(np.mean(pairs_all))


def test_per_loss_divides_scale_metrics_only(tmp_path: Path) -> None:
    df, truth = hand_table(np.random.default_rng(2))
    run = make_run(tmp_path, "r", {"spectra": df})
    comp = compare_runs([run], CompareConfig(n_boot=20, per_loss=True))
    curves = comp.tables["spectra_curves"]
    assert set(curves["metric"]) == {"nuclear/loss", "ratio", "effective_rank"}
    c = curves.query("response_kind == 'correct' and cot_level == 'none' and role == 'q' "
                     "and metric == 'nuclear/loss'").sort_values("layer")
    np.testing.assert_allclose(c["mean"], truth["correct", "none"].mean(0) / 2.0)


def test_two_runs_correct_and_irrelevant(two_runs: list[Path]) -> None:
    comp = compare_runs(two_runs, CompareConfig(n_boot=100))
    assert {"spectra_curves", "spectra_mad", "spectra_reldiff", "separation"} <= set(comp.tables)
    sep = comp.tables["separation"].set_index(["cot_level", "role"])
    # the synthetic data separate with detailed CoT only
    assert sep.loc[("detailed", "all"), "auroc"] > 0.9
    assert 0.1 < sep.loc[("none", "all"), "auroc"] < 0.95
    assert comp.keys.count("dataset") == 1  # the three CoT files of gsm8k are one dataset


def test_controls_sit_next_to_contrast(tmp_path: Path) -> None:
    run = make_run(tmp_path, "c", {"spectra": make_spectra("correct", n_samples=3,
                                                           controls=True)})
    comp = compare_runs([run], CompareConfig(n_boot=20))
    rel = comp.tables["spectra_reldiff"].reset_index(drop=True)
    block = rel.query("a == 'none' and b == 'detailed' and role == 'q' and metric == 'nuclear'")
    assert len(block) == 3  # mean/response, sum/response, mean/answer
    assert list(block.index) == list(range(block.index[0], block.index[0] + 3))  # adjacent
    assert set(zip(block["loss_reduction"], block["loss_span"], strict=True)) == {
        ("mean", "response"), ("sum", "response"), ("mean", "answer")}


def test_dataset_of() -> None:
    assert dataset_of("cot_500_wrong_answer_shuffle/gsm8k_with_cot_gpt4o") == "gsm8k"
    assert dataset_of("aqua_no_cot") == "aqua"
    assert dataset_of("popular_wikipedia_500") == "popular_wikipedia_500"
    # variants files carry two suffixes: the same dataset as the shared files
    assert dataset_of("gsm8k_train_with_cot_gpt4o_detailed") == dataset_of(
        "gsm8k_train_no_cot") == "gsm8k_train"
    assert dataset_of("v/gsm8k_train_with_cot_corrupted") == "gsm8k_train"


def test_variants_and_shared_files_compare_as_one_dataset(tmp_path: Path) -> None:
    df, _ = hand_table(np.random.default_rng(3))
    df = df[df["response_kind"] == "correct"].copy()
    df["source"] = df["source"].str.replace("aqua_with_cot_gpt4o",
                                            "aqua_with_cot_gpt4o_detailed", regex=False)
    comp = compare_runs([make_run(tmp_path, "r", {"spectra": df})], CompareConfig(n_boot=20))
    assert set(comp.tables["spectra_curves"]["dataset"]) == {"aqua"}  # one dataset
    rel = comp.tables["spectra_reldiff"]
    assert set(rel["a"] + "/" + rel["b"]) == {"none/detailed"}


def test_open_failures_keeps_the_latest_unresolved_one() -> None:
    failed = pd.DataFrame({"source": ["a", "a", "b", "c"], "sample_id": [0, 0, 1, 2],
                           "reason": ["oom", "oom again", "bad", "x"]})
    got = open_failures(failed, {("b", 1)})
    assert got[["source", "sample_id", "reason"]].values.tolist() == [["a", 0, "oom again"],
                                                                    ["c", 2, "x"]]
    assert len(open_failures(failed)) == 3


def test_failures_measured_later_are_resolved_per_run(tmp_path: Path) -> None:
    spec = make_spectra("correct", n_samples=2, n_layers=2, roles=("q",))
    failed = pd.DataFrame({"sample_id": [1, 5], "source": ["gsm8k_no_cot", "gsm8k_no_cot"],
                           "reason": ["oom", "prompt too long"]})
    a = make_run(tmp_path, "a", {"spectra": spec, "spectra_failed": failed})
    b = make_run(tmp_path, "b", {"spectra_failed": failed})  # never measured here
    comp = compare_runs([a, b], CompareConfig(n_boot=10))
    got = comp.tables["spectra_failed"]
    assert sorted(zip(got["run"], got["sample_id"], strict=True)) == [("a", 5), ("b", 1),
                                                                      ("b", 5)]


def test_top_samples_per_condition_against_a_direct_sort(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rows = []
    for cond in ("none/correct", "detailed/correct"):
        for s in range(9):
            rows.append({"sample_id": s, "source": f"g_{cond[:4]}", "cot_level": cond[:4],
                         "response_kind": "correct", "condition": cond,
                         "prompt": f"<q{s}>", "response": "r", "answer": None,
                         "n_tokens": 3, "loss": 1.0, "mean_nuclear": float(rng.random()),
                         "max_nuclear": 2.0, "max_layer": 1, "max_role": "v",
                         "loss_reduction": "mean", "loss_span": "response", "init": "pretrained",
                         "init_seed": None, "model": "m"})
    samples = pd.DataFrame(rows)
    dup = samples.iloc[[0]].assign(mean_nuclear=99.0)  # re-measured after a kill: last wins
    run = make_run(tmp_path, "r", {"spectra_samples": pd.concat([samples, dup])})
    top = compare_runs([run], CompareConfig(n_boot=10)).tables["top_samples"]
    assert "answer" not in top.columns  # no answer-span run: no empty column
    for cond, sub in top.groupby("condition"):
        want = samples[samples["condition"] == cond].copy()
        want.loc[want["sample_id"] == 0, "mean_nuclear"] = 99.0 if cond == "none/correct" \
            else want.loc[want["sample_id"] == 0, "mean_nuclear"]
        expect = want.sort_values("mean_nuclear", ascending=False).head(TOP_SAMPLES)
        assert sub["sample_id"].tolist() == expect["sample_id"].tolist()
        assert sub["rank"].tolist() == list(range(1, TOP_SAMPLES + 1))


def test_random_init_seeds_are_separate_curves(tmp_path: Path) -> None:
    a = make_spectra("correct", n_samples=2, n_layers=2, roles=("q",)).assign(init_seed=1)
    b = make_spectra("correct", n_samples=2, n_layers=2, roles=("q",), seed=7).assign(
        init_seed=2)
    comp = compare_runs([make_run(tmp_path, "a", {"spectra": a}),
                         make_run(tmp_path, "b", {"spectra": b})], CompareConfig(n_boot=10))
    assert "init_seed" in comp.keys
    curves = comp.tables["spectra_curves"]
    assert set(curves["init_seed"]) == {"1", "2"}
    assert (curves.groupby(["init_seed", "cot_level", "role", "metric", "layer"]).size() == 1).all()


def test_bad_inputs_become_notes(tmp_path: Path) -> None:
    empty = make_run(tmp_path, "empty", {})
    old = make_run(tmp_path, "old", {"spectra": pd.DataFrame(
        {"sample_id": [0, 1], "layer": [0, 0], "nuclear": [1.0, 2.0]})})  # no role column
    single = make_run(tmp_path, "single", {"spectra": make_spectra("correct", n_samples=1)})
    comp = compare_runs([empty, old, single], CompareConfig(n_boot=20))
    text = " | ".join(comp.notes)
    assert "no tables found" in text
    assert "lacks column(s) role" in text
    comp1 = compare_runs([single], CompareConfig(n_boot=20))
    assert any("single sample" in n for n in comp1.notes)
    assert comp1.tables["spectra_curves"]["lo"].isna().all()
