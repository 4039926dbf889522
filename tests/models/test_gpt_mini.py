# SPDX-License-Identifier: MIT
"""gpt_mini: checkpoints, config validation, cached decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from thoughtgrad.errors import UserError
from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig


def test_checkpoint_round_trip_identical_logits(tmp_path: Path) -> None:
    model = GPTMini(GPTMiniConfig(vocab_size=21, seed=5)).eval()
    x = torch.randint(0, 21, (3, 17))
    model.save(tmp_path / "ckpt", extra={"task": "addition"})
    loaded = GPTMini.load(tmp_path / "ckpt")
    assert torch.equal(model(x).logits, loaded(x).logits)


def test_seeded_init_is_reproducible() -> None:
    a, b = GPTMini(GPTMiniConfig(seed=1)), GPTMini(GPTMiniConfig(seed=1))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = GPTMini(GPTMiniConfig(seed=2))
    assert not torch.equal(a.blocks[0].attn.q.weight, c.blocks[0].attn.q.weight)


def test_d_not_divisible_by_h() -> None:
    with pytest.raises(UserError, match="not divisible"):
        GPTMiniConfig(d_model=130, n_head=4)


def test_missing_and_corrupt_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such directory"):
        GPTMini.load(tmp_path / "nope")
    GPTMini(GPTMiniConfig()).save(tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="corrupt weights"):
        GPTMini.load(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text("{oops")
    with pytest.raises(UserError, match="corrupt JSON"):
        GPTMini.load(tmp_path / "c")


@pytest.mark.parametrize("loops", [1, 3])
def test_cached_decoding_matches_full_forward(loops: int) -> None:
    model = GPTMini(GPTMiniConfig(vocab_size=21, n_loops=loops)).eval()
    x = torch.randint(0, 21, (4, 12))
    full = model(x).logits
    logits, cache = model.forward_cached(x[:, :7], None, 0)
    torch.testing.assert_close(logits, full[:, :7], rtol=1e-5, atol=1e-5)
    for t in range(7, 12):
        step, cache = model.forward_cached(x[:, t: t + 1], cache, t)
        torch.testing.assert_close(step[:, 0], full[:, t], rtol=1e-5, atol=1e-5)


def _ragged(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A right-padded batch of 5 rows of 3..15 tokens: ids, labels (-100 on padding and a
    prompt of 2), lengths."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([15, 3, 9, 15, 6])
    ids = torch.randint(1, 21, (5, 15), generator=g)
    pad = torch.arange(15)[None] >= lengths[:, None]
    ids[pad] = 0
    labels = ids.masked_fill(pad, -100)
    labels[:, :2] = -100
    return ids, labels, lengths


@pytest.mark.parametrize(("loops", "loops_grad"), [(1, None), (3, None), (3, 1)])
def test_packed_path_equals_the_padded_forward(loops: int, loops_grad: int | None) -> None:
    """lengths= runs only the real tokens; every real position's logits and every
    parameter gradient equal the padded forward's (float64, 1e-10 of the global scale)."""
    from thoughtgrad.train.sft import lm_loss

    model = GPTMini(GPTMiniConfig(vocab_size=21, d_model=32, n_head=4, n_layer=2,
                                  n_loops=loops, loops_grad=loops_grad)).double()
    ids, labels, lengths = _ragged(0)
    real = torch.arange(15)[None] < lengths[:, None]
    padded, packed = model(ids).logits, model(ids, lengths=lengths).logits
    torch.testing.assert_close(packed[real], padded[real], rtol=1e-12, atol=1e-12)
    assert torch.count_nonzero(packed[~real]) == 0

    def grads(logits_fn) -> dict[str, torch.Tensor]:
        model.zero_grad()
        lm_loss(logits_fn(), labels).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    a, b = grads(lambda: model(ids).logits), grads(lambda: model(ids, lengths=lengths).logits)
    assert a.keys() == b.keys()
    scale = torch.linalg.vector_norm(torch.stack([g.norm() for g in a.values()]))
    bad = {n: float((a[n] - b[n]).norm() / scale) for n in a
           if float((a[n] - b[n]).norm()) > 1e-10 * float(scale)}
    assert not bad, bad


def test_packed_path_hessian_vector_product() -> None:
    """Double backward through the packed path (curvature probes) equals the padded one."""
    from thoughtgrad.train.sft import lm_loss

    model = GPTMini(GPTMiniConfig(vocab_size=21, d_model=16, n_head=2, n_layer=1)).double()
    ids, labels, lengths = _ragged(1)
    params = [p for p in model.parameters()]
    v = [torch.randn_like(p) for p in params]

    def hvp(logits_fn) -> list[torch.Tensor]:
        g = torch.autograd.grad(lm_loss(logits_fn(), labels), params, create_graph=True)
        dot = sum((gi * vi).sum() for gi, vi in zip(g, v, strict=True))
        return list(torch.autograd.grad(dot, params))

    from thoughtgrad.dynamics.attention import math_attention

    with math_attention():  # the flash SDPA kernel has no double backward
        padded = hvp(lambda: model(ids).logits)
        packed = hvp(lambda: model(ids, lengths=lengths).logits)
    for x, y in zip(padded, packed, strict=True):
        torch.testing.assert_close(y, x, rtol=1e-9, atol=1e-9)


def test_logits_of_packs_only_right_padding() -> None:
    from thoughtgrad.tasks.tokens import right_padded_lengths
    from thoughtgrad.train.sft import Batch, logits_of

    ids, labels, lengths = _ragged(2)
    mask = (torch.arange(15)[None] < lengths[:, None]).long()
    assert torch.equal(right_padded_lengths(mask), lengths)
    assert right_padded_lengths(mask.flip(1)) is None  # left padding: the masked path
    model = GPTMini(GPTMiniConfig(vocab_size=21, d_model=16, n_head=2, n_layer=1)).double()
    out = logits_of(model, Batch(ids, labels, mask))
    torch.testing.assert_close(out[mask.bool()], model(ids).logits[mask.bool()])


def test_called_as_a_hugging_face_causal_lm(tmp_path: Path) -> None:
    model = GPTMini(GPTMiniConfig(vocab_size=21, seed=5)).eval()
    x = torch.randint(0, 21, (2, 9))
    out = model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False)
    assert out.logits.shape == (2, 9, 21)
    torch.testing.assert_close(out.logits, model(x).logits)
    assert model.config.model_type == "gpt_mini"
    model.save(tmp_path / "ckpt")  # config.json names it as a Hugging Face one does
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["model_type"] == \
        model.config.model_type
