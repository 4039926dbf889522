# SPDX-License-Identifier: MIT
"""The dynamics TrainerCallback in a real 5-step Trainer run, then resumed; pre-clip spike
flags recomputed from the logged norm; a flash-style model probed through eager attention."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")

from attention_fixtures import NO_DOUBLE, Rows, V  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from thoughtgrad.dynamics.callback import DynamicsCallback  # noqa: E402
from thoughtgrad.models.tiny import tiny_model  # noqa: E402
from thoughtgrad.runs.store import RunDir  # noqa: E402


def make_trainer(out, run_dir, steps: int, *, logging_steps: int = 1,
                 spike_tau: float | None = None, attention: str | None = None
                 ) -> tuple[Trainer, DynamicsCallback]:
    model = tiny_model("llama", vocab_size=V, seed=0).train()
    if attention is not None:
        model.set_attn_implementation(attention)
    data = Rows()
    probe = {k: torch.stack([data[i][k] for i in range(4)]) for k in data[0]}
    cb = DynamicsCallback(run_dir, regime="cot", probe_batch=probe, curvature_every=2,
                          spike_tau=spike_tau)
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=1e-3, logging_steps=logging_steps, save_steps=2,
                             report_to=[], use_cpu=True, seed=0, max_grad_norm=0.01,
                             disable_tqdm=True)
    return Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]), cb


def test_callback_rows_and_resume(tmp_path) -> None:
    out, run_dir = tmp_path / "trainer", tmp_path / "run"
    trainer, cb = make_trainer(out, run_dir, 5)
    trainer.train()
    df = RunDir.open(run_dir).read("dynamics").sort_values("step")
    assert df.step.tolist() == [0, 1, 2, 3, 4]
    assert (df.status == "ok").all()
    # pre-clip norm from the logs; post-clip norm from the gradients (clipped to 0.01)
    assert (df.grad_norm > 0.05).all()
    assert (df.grad_norm_post_clip <= 0.01 * (1 + 1e-4)).all()
    assert df.loss.notna().all() and df.dist_init.notna().all()
    assert df.lambda_max.notna().tolist() == [True, False, True, False, True]
    assert math.isnan(df.cos_prev.iloc[0]) and df.cos_prev.iloc[1:].notna().all()
    # resume from the last checkpoint (step 4 of a now 7-step run): only new steps appended
    trainer2, _ = make_trainer(out, run_dir, 7)
    trainer2.train(resume_from_checkpoint=True)
    df2 = RunDir.open(run_dir).read("dynamics").sort_values("step")
    assert df2.step.tolist() == list(range(7))
    # the distance keeps its origin across the resume: it keeps growing from step 4
    assert df2.dist_init.iloc[5] > 0 and df2.dist_init.iloc[6] >= df2.dist_init.iloc[0]
    lay = RunDir.open(run_dir).read("layer_grad_norms")
    assert sorted(set(lay.step)) == list(range(7))


def test_spike_flags_come_from_the_pre_clip_norm(tmp_path) -> None:
    """Clipping at 0.01 hides every spike above tau = 0.02 in the post-clip norm; the flags
    are recomputed from the logged pre-clip norm, against a window of earlier pre-clip
    norms (checked by hand), and say so in spike_source."""
    tau, factor, min_history = 0.02, 3.0, 5
    trainer, _ = make_trainer(tmp_path / "t", tmp_path / "run", 7, spike_tau=tau)
    trainer.train()
    df = RunDir.open(tmp_path / "run").read("dynamics").sort_values("step")
    assert (df.spike_source == "pre_clip").all()
    seen: list[float] = []
    for _, row in df.iterrows():
        rel = len(seen) >= min_history and row.grad_norm > factor * statistics.median(seen)
        assert bool(row.spike_abs) == (row.grad_norm > tau)
        assert bool(row.spike_rel) == rel and bool(row.spike) == (row.grad_norm > tau or rel)
        seen.append(row.grad_norm)
    assert df.spike_abs.all()  # post-clip (<= 0.01) flags would all be False
    # logging every other step: unlogged steps keep the post-clip flags, labelled so
    trainer, _ = make_trainer(tmp_path / "t2", tmp_path / "run2", 4, spike_tau=tau,
                              logging_steps=2)
    trainer.train()
    df = RunDir.open(tmp_path / "run2").read("dynamics").sort_values("step")
    assert df.spike_source.tolist() == ["post_clip", "pre_clip", "post_clip", "pre_clip"]
    assert df.spike_abs.tolist() == [False, True, False, True]
    assert df.grad_norm.isna().tolist() == [True, False, True, False]


def test_callback_probes_a_flash_style_model(tmp_path) -> None:
    trainer, _ = make_trainer(tmp_path / "t", tmp_path / "run", 3, attention=NO_DOUBLE)
    trainer.train()
    df = RunDir.open(tmp_path / "run").read("dynamics").sort_values("step")
    assert (df.status == "ok").all(), df.status.tolist()
    assert df.lambda_max.notna().tolist() == [True, False, True]
    assert trainer.model.config._attn_implementation == NO_DOUBLE


@pytest.mark.parametrize("kw", [{"spike_tau": -1.0}, {"curvature_method": "arnoldi"},
                                {"curvature_every": 0}])
def test_bad_callback_settings_fail_before_anything_is_written(tmp_path, kw) -> None:
    with pytest.raises(ValueError):
        DynamicsCallback(tmp_path / "run", **kw)
    assert not (tmp_path / "run").exists()
