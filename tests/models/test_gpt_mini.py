# SPDX-License-Identifier: MIT
"""gpt_mini: checkpoints, config validation, cached decoding."""

from __future__ import annotations

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
    assert torch.equal(model(x), loaded(x))


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
    full = model(x)
    logits, cache = model.forward_cached(x[:, :7], None, 0)
    torch.testing.assert_close(logits, full[:, :7], rtol=1e-5, atol=1e-5)
    for t in range(7, 12):
        step, cache = model.forward_cached(x[:, t: t + 1], cache, t)
        torch.testing.assert_close(step[:, 0], full[:, t], rtol=1e-5, atol=1e-5)
