# SPDX-License-Identifier: MIT
"""The dynamics TrainerCallback in a real 5-step Trainer run, then resumed."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")

from transformers import Trainer, TrainingArguments  # noqa: E402

from thoughtgrad.dynamics.callback import DynamicsCallback  # noqa: E402
from thoughtgrad.models.tiny import tiny_model  # noqa: E402
from thoughtgrad.report.store import RunDir  # noqa: E402

V, T = 64, 12


class Rows(torch.utils.data.Dataset):
    def __init__(self, n: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, V, (n, T), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        labels = self.ids[i].clone()
        labels[:4] = -100
        return {"input_ids": self.ids[i], "labels": labels,
                "attention_mask": torch.ones(T, dtype=torch.long)}


def make_trainer(out, run_dir, steps: int) -> tuple[Trainer, DynamicsCallback]:
    model = tiny_model("llama", vocab_size=V, seed=0).train()
    data = Rows()
    probe = {k: torch.stack([data[i][k] for i in range(4)]) for k in data[0]}
    cb = DynamicsCallback(run_dir, regime="cot", probe_batch=probe, curvature_every=2)
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=1e-3, logging_steps=1, save_steps=2,
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
