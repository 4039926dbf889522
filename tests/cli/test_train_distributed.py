# SPDX-License-Identifier: MIT
"""``thoughtgrad train`` on two real processes (torchrun, gloo, CPU) on a tiny gpt_mini:
the tables and final weights equal a one-process run with the same global batch, the
curvature probe (its Hessian-vector products shared among the ranks) equals the
one-process probe, and a run whose rank 0 is killed after a checkpoint is finished by a
one-process rerun with no step twice and the tables of an uninterrupted run.

Weights are fp64, so the comparison is of the arithmetic: the ranks hold different rows of
each batch (with different token counts: a rank's mean loss must be rescaled for the
averaged gradient to be the global one) and sum the gradient in another order. Every probe
value agrees within 1e-6 relative (the gradient norms are taken in fp32)."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from launch_fixtures import assert_same_rows, killed_run, torchrun
from safetensors.torch import load_file

from thoughtgrad.cli import main

STEPS = 4
CURVATURE = ["lambda_max", "lambda_method", "lambda_iters", "lambda_hvps", "lambda_converged",
             "lambda_max_power", "lambda_iters_power", "lambda_hvps_power",
             "lambda_converged_power", "lambda_max_answer", "lambda_iters_answer"]
TIMING = ["lambda_seconds"]


def _argv(base: Path, out: Path) -> list[str]:
    return ["train", "--model", str(base), "--data", "toy:addition", "--regime", "cot",
            "--steps", str(STEPS), "--batch-size", "8", "--checkpoint-every", "2",
            "--curvature-every", "2", "--curvature-max-iter", "8", "--curvature-method",
            "both", "--probe-batch", "5", "--limit", "32", "--dtype", "fp64", "--device", "cpu",
            "--out", str(out)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, toy_base) -> Path:
    """The same command in this process, alone, uninterrupted."""
    out = tmp_path_factory.mktemp("one") / "run"
    assert main(_argv(toy_base, out)) == 0
    return out


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, toy_base) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("two") / "run"
    res = torchrun(2, _argv(toy_base, out))
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def _dynamics(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "dynamics.parquet")


def test_two_ranks_equal_one_process(two_ranks, reference) -> None:
    out, res = two_ranks
    drop = CURVATURE + TIMING
    assert_same_rows(_dynamics(out).drop(columns=drop), _dynamics(reference).drop(columns=drop),
                 ["step"])
    assert sorted(_dynamics(out).step) == list(range(STEPS))
    assert_same_rows(pd.read_parquet(out / "layer_grad_norms.parquet"),
                 pd.read_parquet(reference / "layer_grad_norms.parquet"), ["step", "layer"])
    got, want = (load_file(str(d / "model-cot" / "model.safetensors")) for d in (out, reference))
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), rtol=1e-9,
                                   atol=1e-12, err_msg=name)
    assert json.loads((out / "manifest.json").read_text())["status"] == "completed"
    assert res.stdout.count("training dynamics per regime") == 1  # rank 0 reports
    assert res.stderr.count(f"cot: {STEPS}/{STEPS}") == 1  # rank 0 shows progress


def test_curvature_probe_equal_across_process_counts(two_ranks, reference) -> None:
    """lambda_max (Lanczos and power) and its answer-only twin: each rank holds its rows of
    the probe batch and the products are all-reduced, so every estimate, its iterations and
    its HVP count are those of one process over the whole probe batch."""
    out, _ = two_ranks
    got, want = (_dynamics(d)[["step", *CURVATURE]] for d in (out, reference))
    assert want.dropna(subset=["lambda_max"]).step.sort_values().tolist() == [0, 2, 3]
    assert want.lambda_max_answer.notna().sum() == 3
    assert_same_rows(got, want, ["step"])


def test_killed_rank_then_one_process_completes(tmp_path, toy_base, reference,
                                                caplog) -> None:
    out = tmp_path / "killed"
    checkpoint = out / "checkpoints" / "cot" / "trainer_state.pt"
    killed = killed_run(2, _argv(toy_base, out), 0, checkpoint.is_file)
    assert killed.returncode != 0, "the job finished although a rank was killed"
    assert len(_dynamics(out)) < STEPS, "the kill was not mid-run"
    with caplog.at_level(logging.INFO, logger="thoughtgrad.train.sft"):
        assert main(_argv(toy_base, out)) == 0
    resumed = [int(r.getMessage().rsplit(" ", 1)[1]) for r in caplog.records
               if r.getMessage().startswith("resumed from")]
    assert len(resumed) == 1 and 0 < resumed[0] < STEPS, resumed
    assert_same_rows(_dynamics(out).drop(columns=TIMING), _dynamics(reference).drop(columns=TIMING),
                 ["step"])
    assert_same_rows(pd.read_parquet(out / "layer_grad_norms.parquet"),
                 pd.read_parquet(reference / "layer_grad_norms.parquet"), ["step", "layer"])
    assert json.loads((out / "manifest.json").read_text())["status"] == "completed"
