# SPDX-License-Identifier: MIT
"""The dynamics monitor inside the SFT loop: non-finite steps, skipped steps, resumed runs
and failing probes recorded in one row per step."""

from __future__ import annotations

import math

import pandas as pd
import torch
from probe_fixtures import answer_only, batches, cfg, tiny_model

from thoughtgrad.dynamics.monitor import DynamicsMonitor
from thoughtgrad.dynamics.probes import (
    AnswerControlProbe,
    CosineProbe,
    DistanceProbe,
    GradNormProbe,
)
from thoughtgrad.runs.store import RunDir
from thoughtgrad.train.sft import Batch, lm_loss, train


def test_nonfinite_stops_cleanly_and_is_recorded(tmp_path) -> None:
    make = batches(2)

    def loss_fn(model, batch):
        loss = lm_loss(model(batch.input_ids).logits, batch.labels)
        return loss * float("nan") if int(batch.input_ids[0, 0]) == int(make(2).input_ids[0, 0]) \
            and torch.equal(batch.input_ids, make(2).input_ids) else loss

    run = RunDir.create(tmp_path / "run", command="test")
    mon = DynamicsMonitor([GradNormProbe(), CosineProbe(), DistanceProbe()], regime="cot",
                          run=run)
    res = train(cfg(6), tiny_model(), make, [mon], loss_fn=loss_fn)
    assert res.stopped_reason and "step 2" in res.stopped_reason
    df = run.read("dynamics")
    assert list(df.step) == [0, 1, 2]
    assert df.status.tolist() == ["ok", "ok", "nonfinite"]
    assert bool(df.skipped.iloc[-1]) and math.isnan(df.loss.iloc[-1])


def test_skip_option_flags_the_step() -> None:
    make = batches(3)
    bad = make(1).input_ids

    def loss_fn(model, batch):
        loss = lm_loss(model(batch.input_ids).logits, batch.labels)
        return loss + float("inf") if torch.equal(batch.input_ids, bad) else loss

    mon = DynamicsMonitor([GradNormProbe(), CosineProbe()], regime="cot")
    res = train(cfg(4, on_nonfinite="skip"), tiny_model(), make, [mon], loss_fn=loss_fn)
    assert res.stopped_reason is None
    df = pd.DataFrame(mon.rows)
    assert df.skipped.tolist() == [False, True, False, False]
    assert df.status.tolist() == ["ok", "nonfinite", "ok", "ok"]
    assert math.isnan(df.cos_prev.iloc[2])  # no previous finite gradient to compare with


def test_resumed_run_keeps_one_row_per_step(tmp_path) -> None:
    make = batches(5)
    run = RunDir.create(tmp_path / "run", command="test")
    ckpt = tmp_path / "ckpt"
    model = tiny_model()
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    mon = DynamicsMonitor([GradNormProbe(), DistanceProbe(initial=init)], regime="cot",
                          run=run, flush_every=2)
    train(cfg(4, checkpoint_every=2), model, make, [mon], checkpoint_dir=ckpt)
    # a longer run in the same directory continues from step 4, writing steps 4 and 5 only
    mon2 = DynamicsMonitor([GradNormProbe(), DistanceProbe(initial=init)], regime="cot",
                           run=run, flush_every=2)
    train(cfg(6, checkpoint_every=2), tiny_model(), make, [mon2], checkpoint_dir=ckpt)
    df = run.read("dynamics").sort_values("step")
    assert df.step.tolist() == list(range(6))
    assert df.dist_init.is_monotonic_increasing or df.dist_init.iloc[-1] > df.dist_init.iloc[0]
    lay = run.read("layer_grad_norms")
    assert sorted(set(lay.step)) == list(range(6))
    assert len(lay) == len(lay.drop_duplicates(["regime", "step", "layer"]))


def test_any_probe_failure_is_recorded_and_training_goes_on() -> None:
    make = batches(9)

    def no_batch(step: int) -> Batch:
        if step == 1:
            raise IndexError("answer batch 1 is missing")
        return answer_only(make)(step)

    mon = DynamicsMonitor([GradNormProbe(), CosineProbe(), AnswerControlProbe(no_batch)],
                          regime="cot")
    res = train(cfg(3), tiny_model(), make, [mon])
    assert res.stopped_reason is None and res.steps_done == 3
    df = pd.DataFrame(mon.rows)
    assert df.status.tolist() == ["ok", "answer_control_error: IndexError: answer batch 1 "
                                  "is missing", "ok"]
    assert math.isnan(df.grad_norm_answer.iloc[1]) and df.cos_prev.iloc[1:].notna().all()
    # the failed step breaks the chain of consecutive answer-only gradients
    assert math.isnan(df.cos_prev_answer.iloc[2]) and df.grad_norm_answer.iloc[2] > 0
