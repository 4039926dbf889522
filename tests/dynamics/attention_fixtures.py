# SPDX-License-Identifier: MIT
"""A Hugging Face attention implementation without double backward (like flash attention),
registered on import, and a random token dataset, for the attention and callback tests
(imported by name, like tests/report/report_fixtures.py)."""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

V, T = 64, 12
NO_DOUBLE = "thoughtgrad_test_no_double_backward"
"""An attention implementation that, like flash attention, has no double backward."""


class _Once(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        return g


def _no_double_attention(module, query, key, value, attention_mask, **kwargs):
    out, weights = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return _Once.apply(out), weights


AttentionInterface.register(NO_DOUBLE, _no_double_attention)


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
