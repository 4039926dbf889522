# SPDX-License-Identifier: MIT
"""Attention for HVPs: a flash-style attention (no double backward) is switched to eager
for the HVP and restored afterwards, also after an error."""

from __future__ import annotations

import pytest
import torch
from attention_fixtures import NO_DOUBLE, Rows, V

from thoughtgrad.dynamics.attention import hvp_attention
from thoughtgrad.dynamics.hessian import top_eigenvalues
from thoughtgrad.models.tiny import tiny_model


def test_flash_style_attention_is_switched_to_eager_for_the_hvp() -> None:
    model = tiny_model("llama", vocab_size=V, seed=0)
    model.set_attn_implementation(NO_DOUBLE)
    ids = Rows(4).ids
    params = [p for p in model.parameters() if p.requires_grad]

    def loss() -> torch.Tensor:
        return model(input_ids=ids, labels=ids).loss

    with pytest.raises(RuntimeError):  # the oracle that the switch is needed at all
        top_eigenvalues(loss, params, max_iter=3)
    with hvp_attention(model):
        assert model.config._attn_implementation == "eager"
        got = top_eigenvalues(loss, params, max_iter=3).eigenvalues[0]
    assert model.config._attn_implementation == NO_DOUBLE
    with pytest.raises(ZeroDivisionError), hvp_attention(model):
        raise ZeroDivisionError
    assert model.config._attn_implementation == NO_DOUBLE  # restored after an error too
    eager = tiny_model("llama", vocab_size=V, seed=0)
    want = top_eigenvalues(lambda: eager(input_ids=ids, labels=ids).loss,
                           [p for p in eager.parameters() if p.requires_grad],
                           max_iter=3).eigenvalues[0]
    assert got == pytest.approx(want, rel=1e-5)
