# SPDX-License-Identifier: MIT
"""The recurrent-depth gpt_mini (n_loops = r) against manual application of its blocks."""

from __future__ import annotations

import copy
import dataclasses
import inspect

import pytest
import torch

from thoughtgrad.errors import UserError
from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig
from thoughtgrad.train.sft import lm_loss


def small(n_layer: int = 2, n_loops: int = 1, **kw) -> GPTMini:
    cfg = GPTMiniConfig(vocab_size=21, block_size=32, n_layer=n_layer, n_head=2, d_model=16,
                        n_loops=n_loops, seed=3, **kw)
    return GPTMini(cfg).eval()


def ids(batch: int = 3, length: int = 9) -> torch.Tensor:
    return torch.randint(0, 21, (batch, length), generator=torch.Generator().manual_seed(1))


def manual_logits(model: GPTMini, x: torch.Tensor, r: int) -> torch.Tensor:
    """Apply the block group r times by hand, re-injecting the embedded input each pass."""
    T = x.shape[1]
    e = model.tok_emb(x) + model.pos_emb(torch.arange(T))  # B T D
    h = e
    for loop in range(r):
        if loop > 0:
            h = h + e
        for blk in model.blocks:
            h = blk(h)
    return model.lm_head(model.ln_f(h))


def test_r1_equals_an_ordinary_block_stack_with_the_same_weights():
    looped = small(n_layer=2, n_loops=3)
    plain = small(n_layer=2, n_loops=1)
    plain.load_state_dict(looped.state_dict())
    x = ids()
    with torch.no_grad():
        got = looped(x, n_loops=1).logits
        stack = torch.nn.Sequential(*[copy.deepcopy(b) for b in looped.blocks])
        h = looped.tok_emb(x) + looped.pos_emb(torch.arange(x.shape[1]))
        want = looped.lm_head(looped.ln_f(stack(h)))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain(x).logits, got, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("r", [2, 3, 5])
def test_looped_r_equals_manual_application(r):
    model = small(n_layer=2, n_loops=2)
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(model(x, n_loops=r).logits, manual_logits(model, x, r),
                                   rtol=1e-5, atol=1e-5)
        if r == 2:
            torch.testing.assert_close(model(x).logits, manual_logits(model, x, 2),
                                       rtol=1e-5, atol=1e-5)


def test_r_is_not_a_no_op():
    model = small(n_layer=1, n_loops=2)
    x = ids()
    with torch.no_grad():
        assert (model(x, n_loops=2).logits - model(x, n_loops=4).logits).abs().max() > 1e-4


@pytest.mark.parametrize("r", [1, 3])
def test_cached_decoding_equals_full_forward_at_test_time_r(r):
    model = small(n_layer=2, n_loops=2)
    x = ids(batch=2, length=8)
    with torch.no_grad():
        full = model(x, n_loops=r).logits
        logits, cache = model.forward_cached(x[:, :5], None, 0, n_loops=r)
        steps = [logits]
        for t in range(5, 8):
            step, cache = model.forward_cached(x[:, t: t + 1], cache, t, n_loops=r)
            steps.append(step)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)


def test_shared_weight_gradient_is_the_sum_over_unrolled_copies():
    """Training a looped model updates one set of weights with the gradient summed over
    every pass: compare with an unrolled model holding one copy of the blocks per loop."""
    r = 3
    model = small(n_layer=2, n_loops=r).train()
    copies = [copy.deepcopy(model.blocks) for _ in range(r)]
    x = ids()
    labels = x.clone()
    lm_loss(model(x).logits, labels).backward()
    T = x.shape[1]
    e = model.tok_emb(x) + model.pos_emb(torch.arange(T))
    h = e
    for loop, group in enumerate(copies):
        if loop > 0:
            h = h + e
        for blk in group:
            h = blk(h)
    lm_loss(model.lm_head(model.ln_f(h)), labels).backward()
    bad = []
    for name, p in model.blocks.named_parameters():
        summed = sum(dict(g.named_parameters())[name].grad for g in copies)
        if not torch.allclose(p.grad, summed, rtol=1e-4, atol=1e-6):
            bad.append(name)
    assert not bad, f"gradient mismatch for {bad}"


def test_flops_scale_with_test_time_loops():
    model = small(n_layer=2, n_loops=2)
    c = model.config
    head = 2 * c.d_model * c.vocab_size
    for ctx in (1, 7):
        per_layer = 2 * (4 * c.d_model**2 + 2 * c.mlp_ratio * c.d_model**2) \
            + 4 * ctx * c.d_model
        assert model.flops_per_token(ctx) == 2 * 2 * per_layer + head
        for r in (1, 3, 8):
            assert model.flops_per_token(ctx, n_loops=r) == r * 2 * per_layer + head


def test_bad_r_is_one_line_error():
    model = small()
    with pytest.raises(UserError, match=r"n_loops \(r\) must be >= 1"):
        model(ids(), n_loops=0)
    with pytest.raises(UserError, match=r"n_loops \(r\) must be >= 1"):
        GPTMiniConfig(n_loops=0)


def truncated(model: GPTMini, m: int) -> GPTMini:
    """A copy of ``model`` whose config sets ``loops_grad = m``."""
    out = GPTMini(dataclasses.replace(model.config, loops_grad=m)).train()
    out.load_state_dict(model.state_dict())
    return out


def grads_of(model: GPTMini, logits_fn, x: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    lm_loss(logits_fn(x), x).backward()
    return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
            for n, p in model.named_parameters()}


def manual_truncated_logits(model: GPTMini, x: torch.Tensor, r: int, m: int) -> torch.Tensor:
    """Full forward of r passes, with the state detached before the last m passes."""
    T = x.shape[1]
    e = model.tok_emb(x) + model.pos_emb(torch.arange(T))  # B T D
    h = e
    for loop in range(r):
        if loop == r - m:
            h = h.detach()
        if loop > 0:
            h = h + e
        for blk in model.blocks:
            h = blk(h)
    return model.lm_head(model.ln_f(h))


def mismatches(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> list[str]:
    return [n for n in want if not torch.allclose(got[n], want[n], rtol=1e-4, atol=1e-6)]


@pytest.mark.parametrize("r", [2, 3])
def test_loops_grad_at_least_r_is_full_backprop(r):
    full = small(n_layer=2, n_loops=r).train()
    x = ids()
    want = grads_of(full, lambda t: full(t).logits, x)
    for m in (r, r + 2):
        model = truncated(full, m)
        bad = mismatches(grads_of(model, lambda t, mod=model: mod(t).logits, x), want)
        assert not bad, f"loops_grad={m}: gradient mismatch for {bad}"


@pytest.mark.parametrize("r,m", [(2, 1), (3, 1), (3, 2), (5, 2)])
def test_truncated_backprop_equals_detaching_the_state(r, m):
    full = small(n_layer=2, n_loops=r).train()
    model = truncated(full, m)
    x = ids()
    got = grads_of(model, lambda t: model(t).logits, x)
    oracle = truncated(full, m)
    want = grads_of(oracle, lambda t: manual_truncated_logits(oracle, t, r, m), x)
    bad = mismatches(got, want)
    assert not bad, f"r={r}, loops_grad={m}: gradient mismatch for {bad}"
    # a real truncation: the block weights' gradient differs from full backprop
    dense = grads_of(full, lambda t: full(t).logits, x)
    assert mismatches(got, dense)
    with torch.no_grad():  # and the forward values do not change
        torch.testing.assert_close(model(x).logits, full(x).logits, rtol=1e-6, atol=1e-6)


def test_truncation_follows_the_loop_count_run():
    """At a test-time r with gradients on, the last min(loops_grad, r) passes carry them."""
    base = small(n_layer=1, n_loops=2).train()
    model = truncated(base, 2)
    x = ids()
    got = grads_of(model, lambda t: model(t, n_loops=5).logits, x)
    oracle = truncated(base, 2)
    want = grads_of(oracle, lambda t: manual_truncated_logits(oracle, t, 5, 2), x)
    assert not mismatches(got, want)
    got1 = grads_of(model, lambda t: model(t, n_loops=1).logits, x)
    want1 = grads_of(base, lambda t: base(t, n_loops=1).logits, x)
    assert not mismatches(got1, want1)


def test_loops_grad_survives_a_checkpoint(tmp_path):
    model = truncated(small(n_layer=1, n_loops=3), 1)
    assert GPTMini.load(model.save(tmp_path / "ck")).config.loops_grad == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_loops_grad_is_one_line_error(bad):
    # the config's own one-line check (beneath the test-time type checker, which refuses a
    # float before it): what a caller without that checker sees
    init = inspect.unwrap(GPTMiniConfig.__init__)
    with pytest.raises(UserError, match="loops_grad must be >= 1") as info:
        init(object.__new__(GPTMiniConfig), n_loops=3, loops_grad=bad)
    assert "\n" not in str(info.value)
