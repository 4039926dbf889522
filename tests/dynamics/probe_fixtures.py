# SPDX-License-Identifier: MIT
"""Tiny gpt_mini runs of the SFT loop for the probe, curvature and monitor tests (imported
by name, like tests/report/report_fixtures.py)."""

from __future__ import annotations

import torch

from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig
from thoughtgrad.train.sft import Batch, TrainConfig

V, T, B = 11, 9, 3


def tiny_model(seed: int = 0) -> GPTMini:
    return GPTMini(GPTMiniConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, d_model=8,
                                 mlp_ratio=2, seed=seed))


def batches(seed: int = 0):
    def make(step: int) -> Batch:
        g = torch.Generator().manual_seed(seed * 1000 + step)
        ids = torch.randint(0, V, (B, T), generator=g)
        labels = ids.clone()
        labels[:, :3] = -100  # prompt
        return Batch(ids, labels, torch.ones_like(ids))
    return make


def answer_only(make):
    def f(step: int) -> Batch:
        b = make(step)
        labels = b.labels.clone()
        labels[:, : T - 2] = -100  # the last two tokens are "the answer"
        return Batch(b.input_ids, labels, b.attention_mask)
    return f


def cfg(steps: int = 6, **kw) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=B, lr=1e-2, warmup_steps=1, **kw)
