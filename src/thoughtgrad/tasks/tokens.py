# SPDX-License-Identifier: MIT
"""Token tensors every study shares: the no-loss label, right-padded batches and the
causal language-model loss per token.

Labels follow the Hugging Face convention: aligned to the input ids (the logits at
position ``t`` predict the label at ``t + 1``), :data:`IGNORE_INDEX` where no loss is
taken (the prompt, padding). Batches are right-padded: each row's real tokens first, then
padding, with an attention mask of ones then zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

IGNORE_INDEX = -100
"""Label value of positions that carry no loss (prompt, padding), as in Hugging Face."""


@runtime_checkable
class TokenSample(Protocol):
    """A sample's ids and labels (``tasks.encode.Encoded`` is one)."""

    input_ids: Sequence[int]
    labels: Sequence[int]


def collate(samples: Sequence[TokenSample | tuple[Sequence[int], Sequence[int]]],
            pad_id: int = 0
            ) -> tuple[Int[Tensor, "B T"], Int[Tensor, "B T"], Int[Tensor, "B T"]]:
    """Right-pad to the longest sample: ``(input_ids, labels, attention_mask)``, padded
    ids ``pad_id``, padded labels :data:`IGNORE_INDEX`. A sample is an object with
    ``input_ids`` and ``labels`` or an ``(input_ids, labels)`` pair."""
    pairs = [(s.input_ids, s.labels) if hasattr(s, "input_ids") else s for s in samples]
    T = max(len(ids) for ids, _ in pairs)
    ids = torch.full((len(pairs), T), pad_id, dtype=torch.long)  # B T
    labels = torch.full((len(pairs), T), IGNORE_INDEX, dtype=torch.long)  # B T
    mask = torch.zeros((len(pairs), T), dtype=torch.long)  # B T
    for b, (x, y) in enumerate(pairs):
        ids[b, : len(x)] = torch.tensor(list(x), dtype=torch.long)
        labels[b, : len(y)] = torch.tensor(list(y), dtype=torch.long)
        mask[b, : len(x)] = 1
    return ids, labels, mask


def right_padded_lengths(mask: Int[Tensor, "B T"] | None) -> Int[Tensor, " B"] | None:
    """Real tokens per row when ``mask`` is right padding (ones, then zeros), else None."""
    if mask is None:
        return None
    lengths = mask.sum(1)  # B
    positions = torch.arange(mask.shape[1], device=mask.device)
    right = torch.equal(mask.bool(), positions[None] < lengths[:, None])
    return lengths if right else None


def token_cross_entropy(logits: Float[Tensor, "B T V"], labels: Int[Tensor, "B T"]
                        ) -> tuple[Float[Tensor, "B T-1"], Tensor]:
    """Per-token cross-entropy in nats with the causal shift (logits at t predict label t+1).

    Returns the losses (0 where the label is :data:`IGNORE_INDEX`) and the boolean mask of
    loss-carrying positions, both B x (T-1). Computed in float32, or float64 for float64
    logits.
    """
    target = labels[:, 1:]  # B T-1
    logit = logits[:, :-1]  # B T-1 V
    if logit.dtype not in (torch.float32, torch.float64):
        logit = logit.float()
    mask = target != IGNORE_INDEX
    ce = F.cross_entropy(logit.reshape(-1, logit.shape[-1]),
                         target.masked_fill(~mask, 0).reshape(-1),
                         reduction="none").view(target.shape)  # B T-1
    return ce * mask, mask
