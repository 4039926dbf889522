# SPDX-License-Identifier: MIT
"""The shared SFT loop: masking by gradients, learning, resuming, non-finite handling, and
the split of a global batch among ranks."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from thoughtgrad.distributed import World
from thoughtgrad.experiments.toy import ToyConfig, evaluate_regime, split_for, train_regime
from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig
from thoughtgrad.tasks.tokens import IGNORE_INDEX, collate
from thoughtgrad.tasks.toy import encode_example
from thoughtgrad.train.sft import Batch, TrainConfig, lm_loss, logits_of, rank_share, train

SMALL = GPTMiniConfig(vocab_size=21, d_model=32, n_layer=2, n_head=4, block_size=32)


def _grads(model: GPTMini, batch: Batch) -> dict[str, torch.Tensor]:
    model.zero_grad()
    lm_loss(logits_of(model, batch), batch.labels).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_prompt_targets_carry_no_gradient() -> None:
    """The prompt carries no loss: d loss / d logits is exactly zero at every position whose
    target is a prompt token, and non-zero at every position whose target is a response
    token (trace and answer alike). So whatever a prompt position "should" predict, no
    parameter gradient can depend on it."""
    model = GPTMini(SMALL)
    prompt, resp = "<3+4+5>", "{3+4=7;7+5=12}12#"
    ids, labels, mask = collate([encode_example(prompt, resp)])
    logits = logits_of(model, Batch(ids, labels, mask)).detach().requires_grad_(True)
    lm_loss(logits, labels).backward()
    row_norms = logits.grad[0].abs().sum(-1)  # T: gradient mass at each position
    # position t predicts token t+1: t < len(prompt)-1 predicts a prompt token
    n_prompt = len(prompt)
    assert torch.count_nonzero(row_norms[: n_prompt - 1]) == 0
    assert bool((row_norms[n_prompt - 1: n_prompt - 1 + len(resp)] > 0).all())
    assert float(row_norms[-1]) == 0.0  # the last position predicts nothing
    # Unmasking the prompt (a different target set) does move the parameter gradients;
    # with the prompt masked, rewriting the unmasked prompt targets does not.
    base = _grads(model, Batch(ids, labels, mask))
    unmasked = ids.clone()
    other = _grads(model, Batch(ids, unmasked, mask))
    assert any(not torch.equal(other[n], base[n]) for n in base)
    scrambled = ids.clone()
    scrambled[0, 1:n_prompt] = torch.randint(1, 21, (n_prompt - 1,),
                                             generator=torch.Generator().manual_seed(0))
    remasked = torch.where(torch.arange(ids.shape[1]) < n_prompt, IGNORE_INDEX, scrambled)
    assert torch.equal(remasked, labels)  # the pipeline's labels ignore prompt content
    # Control: changing one response target changes the gradient.
    moved = labels.clone()
    moved[0, n_prompt + 2] = 9
    changed = _grads(model, Batch(ids, moved, mask))
    assert any(not torch.equal(changed[n], base[n]) for n in base)


def test_tiny_run_learns_k2(tmp_path: Path) -> None:
    cfg = ToyConfig(train_size=2000, train_ks=(2,), eval_ks=(2,), eval_per_k=20,
                    regimes=("direct",), device="cpu",
                    model=dataclasses.replace(SMALL, d_model=64),
                    train=TrainConfig(steps=250, lr=3e-3, warmup_steps=20))
    split = split_for(cfg)
    model, result = train_regime(cfg, split, "direct", tmp_path / "ckpt")
    acc = evaluate_regime(cfg, split, "direct", model)
    assert acc["correct"].mean() > 0.9, acc
    assert result.final_loss < 0.5


def _tiny_batches(step: int) -> Batch:
    g = torch.Generator().manual_seed(step)
    ids = torch.randint(1, 21, (4, 10), generator=g)
    labels = ids.clone()
    labels[:, :3] = IGNORE_INDEX
    return Batch(ids, labels, torch.ones_like(ids))


def test_resume_gives_identical_weights(tmp_path: Path) -> None:
    cfg = TrainConfig(steps=8, warmup_steps=2, checkpoint_every=4)
    straight = GPTMini(SMALL)
    train(cfg, straight, _tiny_batches)
    # Kill the run during step 5 (after the step-4 checkpoint), then resume with a fresh model.

    class Kill:
        def after_backward(self, state) -> None:  # noqa: ANN001
            if state.step == 5:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, GPTMini(SMALL), _tiny_batches, [Kill()], checkpoint_dir=tmp_path)
    resumed = GPTMini(SMALL)
    res = train(cfg, resumed, _tiny_batches, checkpoint_dir=tmp_path)
    assert res.steps_done == 8
    for (n, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(),
                              strict=True):
        torch.testing.assert_close(a, b, msg=n)


def _nan_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    loss = lm_loss(logits_of(model, batch), batch.labels)
    return loss * float("nan") if int(batch.input_ids[0, 0]) % 2 == 0 else loss


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_non_finite_loss(policy: str, tmp_path: Path) -> None:
    cfg = TrainConfig(steps=6, warmup_steps=1, checkpoint_every=1, on_nonfinite=policy)
    model = GPTMini(SMALL)
    seen: list[tuple[int, bool, float]] = []

    class Probe:
        def on_step_end(self, state) -> None:  # noqa: ANN001
            seen.append((state.step, state.skipped, state.loss))

    res = train(cfg, model, _tiny_batches, [Probe()], checkpoint_dir=tmp_path, loss_fn=_nan_loss)
    bad = [s for s in seen if not math.isfinite(s[2])]
    assert bad, "the test batches must contain a NaN step"
    assert all(skipped for _, skipped, _ in bad)
    for p in model.parameters():
        assert torch.isfinite(p).all()
    if policy == "stop":
        assert res.stopped_reason and res.steps_done == bad[0][0]
        assert (tmp_path / "trainer_state.pt").exists()
    else:
        assert res.stopped_reason is None and res.steps_done == 6


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_update_that_breaks_the_weights_is_never_checkpointed(policy: str,
                                                              tmp_path: Path) -> None:
    """An update with a finite loss and gradient can still overflow the weights (lr 1e39
    is inf in fp32, no clipping); the run stops whatever the policy, and the last
    checkpoint on disk stays the finite one before the update."""
    good = TrainConfig(steps=2, warmup_steps=1, checkpoint_every=1)
    model = GPTMini(SMALL)
    train(good, model, _tiny_batches, checkpoint_dir=tmp_path)
    blow = TrainConfig(steps=5, warmup_steps=1, checkpoint_every=1, lr=1e39, grad_clip=None,
                       on_nonfinite=policy)
    res = train(blow, model, _tiny_batches, checkpoint_dir=tmp_path)
    assert res.stopped_reason and "weights became non-finite" in res.stopped_reason
    state = torch.load(tmp_path / "trainer_state.pt", weights_only=False)
    assert state["step"] == 2
    for name, w in state["model"].items():
        assert torch.isfinite(w).all(), name


def test_resumed_run_reports_total_training_seconds(tmp_path: Path) -> None:
    cfg = TrainConfig(steps=6, warmup_steps=1, checkpoint_every=3)

    class Kill:
        def after_backward(self, state) -> None:  # noqa: ANN001
            if state.step == 4:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, GPTMini(SMALL), _tiny_batches, [Kill()], checkpoint_dir=tmp_path)
    first = torch.load(tmp_path / "trainer_state.pt", weights_only=False)["seconds"]
    assert first > 0
    res = train(cfg, GPTMini(SMALL), _tiny_batches, checkpoint_dir=tmp_path)
    assert res.seconds_before == pytest.approx(first)
    assert res.total_seconds == pytest.approx(first + res.seconds)


def test_lm_loss_keeps_float64() -> None:
    logits = torch.randn(2, 5, 7, dtype=torch.float64)
    labels = torch.randint(0, 7, (2, 5))
    assert lm_loss(logits, labels).dtype == torch.float64
    assert lm_loss(logits.to(torch.bfloat16), labels).dtype == torch.float32


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(2, 9), min_size=1, max_size=7), size=st.integers(1, 4),
       seed=st.integers(0, 999))
def test_rank_shares_give_the_global_gradient(lengths: list[int], size: int, seed: int) -> None:
    """Sharding a right-padded batch among ``size`` ranks partitions its rows and tokens,
    and the ranks' rescaled losses, averaged as DistributedDataParallel averages gradients,
    have the gradient of the one mean over the whole batch (oracle: one backward)."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for n in lengths:
        ids = torch.randint(1, 21, (n,), generator=g).tolist()
        cut = int(torch.randint(0, n, (1,), generator=g))
        samples.append((ids, [IGNORE_INDEX] * cut + ids[cut:]))
    whole = Batch(*collate(samples, pad_id=0))
    model = GPTMini(dataclasses.replace(SMALL, n_layer=1)).double()
    want = _grads(model, whole)
    got = {n: torch.zeros_like(w) for n, w in want.items()}
    shards = [whole.shard(World(rank=r, size=size)) for r in range(size)]
    assert sum(s.n_rows for s in shards) == whole.n_rows
    assert sum(s.n_tokens for s in shards) == whole.n_tokens
    for rank, part in enumerate(shards):
        world = World(rank=rank, size=size)
        width = part.input_ids.shape[1]
        assert torch.equal(part.input_ids, whole.input_ids[rank::size, :width])
        assert torch.equal(part.labels, whole.labels[rank::size, :width])
        assert not whole.attention_mask[rank::size, width:].any()  # only padding dropped
        assert not part.n_rows or part.attention_mask[:, -1].any()  # ... and all of it
        if not part.n_rows:
            continue
        for n, grad in _grads(model, part).items():
            got[n] += grad * rank_share(part, whole, world) / size
    bad = [n for n in want if not torch.allclose(got[n], want[n], rtol=1e-9, atol=1e-12)]
    assert not bad, bad
