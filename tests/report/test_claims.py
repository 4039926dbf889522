# SPDX-License-Identifier: MIT
"""The claims table on synthetic spectra rows whose answer is known: a claim that holds, one
that holds only with the mean loss, one that does not hold, one not measurable; the
cross-model claims; the five-seed table; model names with their quantisation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from thoughtgrad.experiments.sum_control import sum_spectra
from thoughtgrad.report.claims import (
    FAILS,
    HOLDS,
    HOLDS_ONLY_MEAN,
    NOT_MEASURABLE,
    claims_table,
    control_of,
)
from thoughtgrad.report.grid_report import expand_grids, model_labels
from thoughtgrad.report.seed_claims import HOLDS_ONLY_FULL, NOT_IN_RUNS, claims_across_seeds

N = 20
LAYERS = range(6)
LEVEL_SCALE = {"none": 10.0, "simplified": 3.0, "detailed": 1.0}
LEVEL_TOKENS = {"none": 2, "simplified": 20, "detailed": 100}
FILES = {"none": "_no_cot", "simplified": "_with_cot", "detailed": "_with_cot_gpt4o"}


def _rows(model: str, *, none_scale: float = 10.0, seed: int = 0) -> pd.DataFrame:
    """gsm8k: none 10x (or ``none_scale``) detailed with a zigzag over layers; detailed
    irrelevant 2x correct in the first two layers only; none irrelevant like correct; loss
    independent of everything. wiki: 100-token pages 3x the 1000-token ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for level, scale in {**LEVEL_SCALE, "none": none_scale}.items():
        for kind in ("correct", "irrelevant"):
            folder = "cot_500" if kind == "correct" else "cot_500_wrong_answer_shuffle"
            for i in range(N):
                noise = rng.lognormal(0, 0.1)
                loss = float(rng.uniform(1, 2))
                for layer in LAYERS:
                    zig = 1.0 + (0.5 if layer % 2 else 0.0)
                    irr = 2.0 if (kind == "irrelevant" and level == "detailed"
                                  and layer < 2) else 1.0
                    for role in ("q", "k"):
                        rows.append({
                            "sample_id": i, "source": f"{folder}/gsm8k_train{FILES[level]}",
                            "cot_level": level, "response_kind": kind, "layer": layer,
                            "role": role, "nuclear": scale * zig * irr * noise
                            * rng.lognormal(0, 0.01), "n_tokens": LEVEL_TOKENS[level],
                            "loss": loss})
    for stem, scale in (("popular_wikipedia_100", 3.0), ("popular_wikipedia_1000", 1.0)):
        for i in range(N):
            for layer in LAYERS:
                rows.append({"sample_id": i, "source": f"wiki_popularity/{stem}",
                             "cot_level": None, "response_kind": "correct", "layer": layer,
                             "role": "q", "nuclear": scale * rng.lognormal(0, 0.05),
                             "n_tokens": 10, "loss": 1.0})
    df = pd.DataFrame(rows)
    return df.assign(model=model, loss_reduction="mean", loss_span="response",
                     init="pretrained")


def _verdicts(table: pd.DataFrame) -> dict[str, str]:
    return dict(zip(table["claim"], table["verdict"], strict=True))


def test_known_answers_on_one_model():
    mean = _rows("m")
    gsm = mean[mean["source"].str.contains("gsm8k")]
    table = claims_table(pd.concat([mean, sum_spectra(gsm)], ignore_index=True))
    v = _verdicts(table)
    assert v["a"] == HOLDS_ONLY_MEAN  # 10x larger, but detailed has 50x the tokens
    assert v["b"] == HOLDS_ONLY_MEAN
    assert v["c"] == HOLDS  # detailed irrelevant 2x, none identical
    assert v["d"] == FAILS  # the 100-token pages have 3x the 1000-token ones' scale
    assert v["e"] == NOT_MEASURABLE and v["g"] == NOT_MEASURABLE  # one model only
    assert v["f"] == HOLDS  # the irrelevant response moves only the early layers
    a = table[table["claim"] == "a"].iloc[0]
    assert 9 < a["value"] < 11 and a["lo"] > 1 and a["n"] == N
    assert 0.15 < float(a["sum loss"].split()[0]) < 0.25  # 10 x 2 / 100 tokens
    assert a["random init"] == "not measured"
    c = table[table["claim"] == "c"].iloc[0]
    assert c["value"] > 0.9 and "separates beyond the loss alone" in c["why"]
    assert c["loss only (AUROC)"].startswith("detailed 0.")
    only_mean = _verdicts(claims_table(mean))
    assert only_mean["a"] == HOLDS and only_mean["c"] == HOLDS


def test_a_loss_that_separates_as_well_is_said():
    df = _rows("m")
    irr = (df["response_kind"] == "irrelevant") & (df["cot_level"] == "detailed")
    df.loc[irr, "loss"] += 5.0  # the loss alone separates perfectly
    c = claims_table(df).set_index("claim").loc["c"]
    assert c["verdict"] == HOLDS and "the gradient adds nothing" in c["why"]


def test_random_init_control_and_too_few_samples():
    df = _rows("m")
    rand = df.assign(init="random")
    table = claims_table(pd.concat([df, rand], ignore_index=True)).set_index("claim")
    assert "needs no training" in table.loc["a", "why"]
    few = df[df["sample_id"] < 2]
    assert _verdicts(claims_table(few))["a"] == NOT_MEASURABLE
    assert control_of("sum", "answer", "pretrained") == "other"


def test_cross_model_claims_are_labelled_across_families():
    inst, base = _rows("/m/smol", seed=1), _rows("/m/gemma", none_scale=2.0, seed=2)
    table = claims_table(pd.concat([inst, base], ignore_index=True),
                         kinds={"/m/smol": "instruct", "/m/gemma": "base"},
                         names={"/m/smol": "SmolLM2-135M-Instruct.Q4_1.gguf",
                                "/m/gemma": "gemma-3-270m.Q4_K_M.gguf"}).set_index("claim")
    assert table.loc["g", "verdict"] == HOLDS  # base ratio 2 < instruct ratio 10
    assert table.loc["e", "verdict"] == HOLDS  # both separate equally well
    assert "two families" in table.loc["e", "model"]
    assert set(table.loc["a", "model"]) == {"SmolLM2-135M-Instruct.Q4_1.gguf",
                                            "gemma-3-270m.Q4_K_M.gguf"}


def test_claims_across_five_seeds():
    claims = claims_table(_rows("m"))
    dyn = pd.DataFrame({"claim": ["grad_norm_mean", "grad_norm_mean", "spikes", "spikes"],
                        "loss": ["full", "answer", "full", "answer"],
                        "cot": [1.0, 2.0, 3, 3], "direct": [2.0, 1.0, 1, 1],
                        "ratio": [0.5, 2.0, 3.0, 3.0]})
    acc = pd.DataFrame({"regime": ["cot"] * 10 + ["direct"] * 10, "k": 6,
                        "correct": [True] * 10 + [False] * 10})
    table = claims_across_seeds({"claims": claims, "dynamics_claims": dyn}, {"accuracy": acc})
    by = table.set_index(["seed", "claim"])["verdict"]
    assert by[("001", "c")] == HOLDS and by[("001", "e")] == NOT_MEASURABLE
    assert by[("000", "grad_norm_mean")] == HOLDS_ONLY_FULL
    assert by[("000", "spikes")] == FAILS
    assert by[("000", "lambda_max_mean")] == NOT_MEASURABLE
    assert by[("003", "cot-beats-direct")] == HOLDS
    assert (table.loc[table["seed"] == "004", "measured"] == NOT_IN_RUNS).all()
    assert set(table["section"]) >= {"claims-spectra", "dynamics", "toy", "scale"}


def test_model_names_with_quantisation_and_grid_expansion(tmp_path):
    kinds, names = model_labels({
        "a": {"model": "/c/abc", "model_kind": "instruct",
              "model_provenance": {"gguf_file": "/p/SmolLM2-135M-Instruct.Q4_1.gguf",
                                   "sha256": "0" * 64}, "quantization": "Q4_1"},
        "b": {"model": "/x/llama"}})
    assert kinds == {"/c/abc": "instruct"}
    assert names == {"/c/abc": "SmolLM2-135M-Instruct.Q4_1.gguf (Q4_1 dequantised)",
                     "/x/llama": "llama"}
    grid = tmp_path / "g"
    (grid / "cells" / "gsm8k").mkdir(parents=True)
    (grid / "manifest.json").write_text(json.dumps({"command": "grid", "cells": [
        {"name": "gsm8k", "path": "cells/gsm8k"}, {"name": "aqua", "path": "cells/aqua"}]}))
    other = tmp_path / "run"
    assert expand_grids([grid, other]) == [grid / "cells" / "gsm8k", other]


def test_thirds_are_of_each_models_own_depth():
    """Two models of 6 and 3 layers in one table: each sample's early / late thirds are
    its own model's first / last third (layers 0-1 / 4-5 and 0 / 2), never empty."""
    from thoughtgrad.report.claims import sample_table

    rows = []
    for model, depth in (("deep", 6), ("shallow", 3)):
        for layer in range(depth):
            rows.append({"model": model, "source": "gsm8k_train_with_cot_gpt4o",
                         "sample_id": 0, "role": "q", "layer": layer,
                         "nuclear": float(10 ** layer), "loss": 1.0, "n_tokens": 5,
                         "cot_level": "detailed", "response_kind": "correct"})
    t = sample_table(pd.DataFrame(rows)).set_index("model")
    assert t.loc["deep", "early"] == pytest.approx((1 + 10) / 2)
    assert t.loc["deep", "late"] == pytest.approx((1e4 + 1e5) / 2)
    assert t.loc["shallow", "early"] == pytest.approx(1.0)
    assert t.loc["shallow", "late"] == pytest.approx(100.0)
