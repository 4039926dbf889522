# SPDX-License-Identifier: MIT
"""capture: hooks always removed, flags restored, captured factors equal weight gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from thoughtgrad.errors import UserError
from thoughtgrad.models.tiny import tiny_model
from thoughtgrad.spectra import layer_spectra
from thoughtgrad.spectra.capture import capturing, forward_logits, rule_for


def _hook_counts(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def _targets(model):
    return {"blocks.0.attn.q": model.blocks[0].attn.q,
            "blocks.1.mlp.down": model.blocks[1].mlp.down}


def test_hooks_removed_and_flags_restored_after_success():
    model = tiny_model("gpt_mini", vocab_size=64)
    model.train()
    model.blocks[0].attn.k.weight.requires_grad_(False)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    ids = torch.randint(0, 64, (2, 6))
    with capturing(model, _targets(model)) as cap:
        assert not model.training and _hook_counts(model) == 3
        assert not any(p.requires_grad for p in model.parameters())
        forward_logits(model, ids, torch.ones_like(ids)).sum().backward()
    assert _hook_counts(model) == 0
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert set(cap.inputs) == set(cap.grads) == set(_targets(model))


def test_hooks_removed_and_flags_restored_after_exception():
    model = tiny_model("gpt_mini", vocab_size=64)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"), capturing(model, _targets(model)):
        ids = torch.zeros(1, 3, dtype=torch.long)
        forward_logits(model, ids, torch.ones_like(ids))
        raise RuntimeError("boom")
    assert _hook_counts(model) == 0
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert not model.training


def test_layer_spectra_leaves_model_untouched_even_on_bad_input():
    model = tiny_model("gpt2", vocab_size=64)
    ids = torch.randint(3, 64, (2, 8))
    labels = ids.clone()
    labels[1] = -100
    with pytest.raises(UserError, match="sample 1"):
        layer_spectra(model, ids, labels)
    layer_spectra(model, ids, ids.clone())
    assert _hook_counts(model) == 0
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_captured_factors_give_the_batch_weight_gradient():
    """sum_s D_s^T X_s over the batch equals the real weight gradient of the summed loss."""
    model = tiny_model("gpt2", vocab_size=64).double()
    module = model.transformer.h[0].attn.c_attn  # Conv1D: weight n x m
    ids = torch.randint(3, 64, (2, 7))
    with capturing(model, {"transformer.h.0.attn.c_attn": module}) as cap:
        forward_logits(model, ids, torch.ones_like(ids)).pow(2).mean().backward()
    x, d = cap.factors("transformer.h.0.attn.c_attn", module)
    g = torch.einsum("btm,btn->mn", d, x)
    logits = forward_logits(model, ids, torch.ones_like(ids))
    (w_grad,) = torch.autograd.grad(logits.pow(2).mean(), [module.weight])
    assert rule_for(module).out_axis == 1
    torch.testing.assert_close(g, w_grad.T)


def test_unregistered_layer_type_fails_with_its_name():
    class Odd(nn.Module):
        weight = torch.zeros(2, 2)

    with pytest.raises(UserError, match="Odd"):
        rule_for(Odd())
