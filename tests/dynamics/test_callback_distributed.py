# SPDX-License-Identifier: MIT
"""The dynamics TrainerCallback in a Hugging Face ``Trainer`` on two real processes
(torchrun, gloo, CPU, ``use_cpu=True``): the Trainer's DistributedDataParallel, and the
callback's rows -- written by rank 0 only -- equal a one-process run with the same global
batch, the curvature probe's products shared between the ranks.

The Trainer logs its loss in fp32 and the tiny llama's RMSNorm computes in fp32 even with
fp64 weights, so values agree within 1e-6 relative, not to the last fp64 digit."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")

from launch_fixtures import assert_same_rows, torchrun  # noqa: E402
from trainer_ranks import STEPS, run_trainer  # noqa: E402

SCRIPT = Path(__file__).with_name("trainer_ranks.py")


def test_trainer_on_two_ranks_equals_one_process(tmp_path) -> None:
    run_trainer(tmp_path / "one" / "out", tmp_path / "one" / "run")
    res = torchrun(2, [tmp_path / "two" / "out", tmp_path / "two" / "run"], script=SCRIPT)
    assert res.returncode == 0, res.stderr[-3000:]
    got, want = (pd.read_parquet(tmp_path / d / "run" / "dynamics.parquet")
                 .drop(columns="lambda_seconds") for d in ("two", "one"))
    assert sorted(want.step) == list(range(STEPS))
    assert want.lambda_max.notna().sum() == 2 and want.loss.notna().all()
    assert (want.spike_source == "pre_clip").all()  # the logged pre-clip norm, every step
    assert_same_rows(got, want, ["step"])
    assert_same_rows(*(pd.read_parquet(tmp_path / d / "run" / "layer_grad_norms.parquet")
                       for d in ("two", "one")), ["step", "layer"])
