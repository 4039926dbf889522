# SPDX-License-Identifier: MIT
"""The supervised fine-tuning loop used by every regime (STYLE rule 10).

Chain-of-thought is a data change, not a loss change (seed 003): the loop below is the
same for answer-only, CoT, simplified or half-step responses, for gpt_mini and for any
Hugging Face causal LM. Per step: prompt-masked cross-entropy (mean over the batch's
response tokens, in nats), backward, probes read the pre-clip gradients, clip the global
norm, AdamW step. Probes are callbacks; they read state and never touch the optimizer.

Checkpoints (``checkpoint_dir``) hold the model, optimizer, step and RNG state, so a run
killed mid-way resumes from its last checkpoint with the same batches (batches are a
function of the step number).

Under a launcher (``world`` of several ranks, :mod:`thoughtgrad.distributed`) the loop is
data parallel (:mod:`thoughtgrad.train.data_parallel`): every rank builds the step's global
batch, keeps its rows (:meth:`Batch.shard`) and backpropagates through
DistributedDataParallel a loss scaled so that the averaged gradient is the one-process
gradient of the global batch. Callbacks see that all-reduced gradient, the global mean
loss and the unwrapped model; only rank 0 writes checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from thoughtgrad import distributed
from thoughtgrad.distributed import SINGLE, World
from thoughtgrad.errors import UserError
from thoughtgrad.tasks.tokens import (
    IGNORE_INDEX,
    TokenSample,
    collate,
    right_padded_lengths,
    token_cross_entropy,
)
from thoughtgrad.train.checkpoint import STATE_FILE, load_state, save_state

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and loop settings; defaults are the toy lab's (seed 003), CPU-sized."""

    steps: int = 2000
    """optimizer steps"""
    batch_size: int = 64
    """training examples per step"""
    lr: float = 1e-3
    """peak AdamW learning rate (linear warm-up, then cosine down to min_lr_ratio x lr)"""
    min_lr_ratio: float = 0.1
    """final learning rate as a fraction of lr (1 = constant after warm-up)"""
    warmup_steps: int = 100
    """linear warm-up steps"""
    weight_decay: float = 0.1
    """AdamW weight decay"""
    beta1: float = 0.9
    """AdamW beta1"""
    beta2: float = 0.99
    """AdamW beta2"""
    grad_clip: float | None = 1.0
    """global gradient-norm clip (0 or none = off)"""
    seed: int = 0
    """seed of the init, the batches and the dropped steps"""
    checkpoint_every: int | None = None
    """steps between checkpoints (resumption points)"""
    on_nonfinite: str = "stop"
    """NaN/inf loss or gradient: stop (last good checkpoint kept) or skip the step with a
    flag"""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise UserError(f"train config: steps must be >= 0, got {self.steps}")
        if self.batch_size < 1:
            raise UserError(f"train config: batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise UserError(f"train config: lr must be > 0, got {self.lr}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise UserError(f"train config: on_nonfinite must be 'stop' or 'skip', "
                            f"got {self.on_nonfinite!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise UserError(f"train config: grad_clip must be > 0 or None, got {self.grad_clip}")

    def with_steps(self, steps: int) -> TrainConfig:
        """This config for a run of ``steps`` steps; the warm-up keeps its share of the run
        (at least one step when there is any). The one warm-up rule of every command."""
        warmup = self.warmup_steps
        if warmup and self.steps:
            warmup = max(1, round(warmup * steps / self.steps))
        return dataclasses.replace(self, steps=steps, warmup_steps=warmup)


@dataclass
class Batch:
    """Token ids, labels aligned to them (HF convention; -100 = no loss), attention mask."""

    input_ids: Int[Tensor, "B T"]
    labels: Int[Tensor, "B T"]
    attention_mask: Int[Tensor, "B T"] | None = None

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.labels.to(device),
                     None if self.attention_mask is None else self.attention_mask.to(device))

    @property
    def n_tokens(self) -> int:
        """Loss-carrying tokens (labels shifted by one: position 0 is never a target)."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    @property
    def n_rows(self) -> int:
        return int(self.input_ids.shape[0])

    def shard(self, world: World) -> Batch:
        """This rank's rows of a global batch: rows ``i`` with ``i % size == rank``, without
        the trailing columns that are padding in every kept row (they carry no loss). One
        process: the batch itself. A rank may get no row when the batch is smaller than
        the number of ranks."""
        if not world.distributed:
            return self
        rows = slice(world.rank, None, world.size)
        ids, labels = self.input_ids[rows], self.labels[rows]  # B_r T
        mask = None if self.attention_mask is None else self.attention_mask[rows]  # B_r T
        if mask is not None and bool(mask.any()):
            width = int(mask.any(0).nonzero().max()) + 1
            ids, labels, mask = ids[:, :width], labels[:, :width], mask[:, :width]  # B_r T_r
        return Batch(ids, labels, mask)


def make_batches(samples: Sequence[TokenSample | tuple[Sequence[int], Sequence[int]]], *,
                 batch_size: int, seed: int, pad_id: int) -> Callable[[int], Batch]:
    """Step -> a right-padded batch of ``batch_size`` samples drawn with replacement by a
    generator seeded by (seed, step), so a resumed run, and every regime given samples in
    the same order, see the same sample indices at the same step."""

    def batch(step: int) -> Batch:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(len(samples), (batch_size,), generator=g).tolist()
        ids, labels, mask = collate([samples[i] for i in idx], pad_id)
        return Batch(ids, labels, mask)

    return batch


PACKING_MODELS = ("gpt_mini",)
"""Model types whose forward takes ``lengths=`` (real tokens per row of a right-padded
batch) and then skips the work on padding."""


def logits_of(model: nn.Module, batch: Batch) -> Float[Tensor, "B T V"]:
    """Logits for every position of a causal LM called as Hugging Face's are.

    A model that packs (gpt_mini: ``config.model_type`` in :data:`PACKING_MODELS`; also
    inside DistributedDataParallel) runs a right-padded batch packed (its ``lengths``
    path: the same logits at real positions, none of the work on padding); padding
    positions then hold 0, which the loss never reads (their labels are -100).
    """
    ids, mask = batch.input_ids, batch.attention_mask
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if getattr(getattr(inner, "config", None), "model_type", None) in PACKING_MODELS:
        lengths = right_padded_lengths(mask)
        if lengths is not None and int(lengths.min()) < ids.shape[1]:
            return model(input_ids=ids, lengths=lengths).logits
        mask = None  # no padding; gpt_mini's causal attention needs no mask
    return model(input_ids=ids, attention_mask=mask, use_cache=False).logits


def lm_loss(logits: Float[Tensor, "B T V"], labels: Int[Tensor, "B T"],
            reduction: str = "mean") -> Tensor:
    """Next-token cross-entropy in nats over positions whose (shifted) label is not -100.

    ``mean``: mean over all loss-carrying tokens of the batch (a scalar); ``sum``: their
    sum; ``sample_mean``: each sample's own mean, shape ``[B]``; ``none``: per position,
    shape ``[B, T-1]`` (0 where masked).
    """
    per, mask = token_cross_entropy(logits, labels)  # B T-1, 0 where masked
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    if reduction == "sample_mean":
        return per.sum(1) / mask.sum(1).clamp(min=1)
    if reduction == "mean":
        return per.sum() / mask.sum().clamp(min=1)
    raise ValueError(f"unknown reduction {reduction!r}")


@dataclass
class TrainState:
    """What callbacks may read. ``grad_norm`` is the global pre-clip norm (after backward).

    Under a launcher ``model`` is the unwrapped module (its gradients already all-reduced:
    a probe's own autograd calls fire no DistributedDataParallel hook), ``batch`` the
    step's global batch, ``loss`` its global mean, and ``world`` the job, for probes that
    share their own work among the ranks (they then run in step on every rank).
    """

    step: int
    model: nn.Module
    batch: Batch | None = None
    loss: float = math.nan
    grad_norm: float = math.nan
    lr: float = math.nan
    skipped: bool = False
    params: list[Tensor] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    world: World = SINGLE


class Callback(Protocol):
    """Probe interface; every method is optional."""

    def on_train_start(self, state: TrainState) -> None: ...
    def after_backward(self, state: TrainState) -> None: ...
    def on_step_end(self, state: TrainState) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...


@dataclass
class TrainResult:
    steps_done: int
    final_loss: float
    losses: list[float]
    seconds: float
    tokens: int
    stopped_reason: str | None = None
    seconds_before: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Throughput of this call (``tokens`` over ``seconds``)."""
        return self.tokens / self.seconds if self.seconds > 0 and self.tokens else math.nan

    @property
    def total_seconds(self) -> float:
        """Training wall time over every segment of a resumed run."""
        return self.seconds_before + self.seconds


def _call(callbacks: Sequence[Any], name: str, state: TrainState) -> None:
    for cb in callbacks:
        fn = getattr(cb, name, None)
        if fn is not None:
            fn(state)


def total_grad_norm(params: Sequence[Tensor]) -> float:
    """Global L2 norm of the parameters' gradients (fp32), without modifying them."""
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    if not norms:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(norms)))


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up then cosine decay to ``min_lr_ratio * lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    ratio = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * ratio


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, norms or embeddings' 1-D params)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=_fused_ok(model))


def _fused_ok(model: nn.Module) -> bool | None:
    """Use the fused AdamW kernel when every parameter is float on CPU or CUDA."""
    ps = list(model.parameters())
    ok = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in ps)
    return True if ok and ps else None


def data_parallel(model: nn.Module, world: World, device: torch.device | str) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel for a ``world`` of several ranks (its
    gradients all-reduced and averaged during backward), else ``model`` itself."""
    if not world.distributed:
        return model
    dev = torch.device(device)
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[dev.index] if dev.type == "cuda" else None)


def rank_share(part: Batch, whole: Batch, world: World) -> float:
    """The factor of this rank's mean loss over ``part`` (its shard of the global batch
    ``whole``): ``n_r * size / N`` with ``n_r`` and ``N`` their loss tokens. The rank then
    backpropagates (its token losses summed) x size / N, and DistributedDataParallel's
    average over the ``size`` ranks is the gradient of the mean over all N tokens."""
    return part.n_tokens * world.size / max(whole.n_tokens, 1)


def weights_finite(params: Sequence[Tensor]) -> bool:
    """Whether every parameter value is finite (checked before a checkpoint is written)."""
    return all(bool(torch.isfinite(p.detach()).all()) for p in params)


def train(cfg: TrainConfig, model: nn.Module, batches: Callable[[int], Batch],
          callbacks: Sequence[Any] = (), *, device: torch.device | str = "cpu",
          checkpoint_dir: str | Path | None = None,
          save_model: Callable[[nn.Module, Path], None] | None = None,
          load_model: Callable[[nn.Module, Path], None] | None = None,
          progress: Callable[[int, int, float], None] | None = None,
          loss_fn: Callable[[nn.Module, Batch], Tensor] | None = None,
          world: World = SINGLE) -> TrainResult:
    """Train ``model`` for ``cfg.steps`` steps on ``batches(step)``; return a result.

    ``batches`` maps a step number to its batch, so a resumed run sees the same data.
    ``loss_fn(model, batch)`` defaults to :func:`lm_loss` (mean) over :func:`logits_of`.
    A non-finite loss or gradient stops the run (``on_nonfinite="stop"``; the last good
    checkpoint is kept) or skips the update (``"skip"``, ``state.skipped`` is set). Weights
    made non-finite by an update (a finite but huge gradient) always stop the run, caught
    before any checkpoint would store them, so a checkpoint never holds NaN/inf weights.

    With a ``world`` of several ranks (every rank calls this with the same arguments and
    its own ``device``) ``batches(step)`` is the global batch: each rank runs ``loss_fn``
    on its :meth:`Batch.shard` through DistributedDataParallel, scaled by
    :func:`rank_share` (``loss_fn`` must then be a mean over the batch's
    :attr:`Batch.n_tokens`, as the default is), so the averaged gradient is the gradient
    of the mean over the global batch's tokens. Every rank reads a checkpoint; only rank 0
    writes one. ``cfg.batch_size`` must be at least the number of ranks. Dropout masks are
    drawn on each rank, so with dropout the runs match one process only in distribution.
    """
    if world.distributed and cfg.batch_size < world.size:
        raise UserError(f"batch size {cfg.batch_size} is smaller than the {world.size} "
                        "processes: every process needs at least one example per step")
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    opt = make_optimizer(cfg, model)
    params = [p for p in model.parameters() if p.requires_grad]
    start, losses, before, kept = 0, [], 0.0, []
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and (ckpt / STATE_FILE).exists():
        start, losses, before, kept = load_state(ckpt, model, opt, load_model)
        log.info("resumed from %s at step %d", ckpt, start)
    compute = loss_fn or (lambda m, b: lm_loss(logits_of(m, b), b.labels))
    forward = data_parallel(model, world, device)
    state = TrainState(step=start, model=model, params=params, world=world)
    _call(callbacks, "on_train_start", state)
    for cb, cb_state in zip(callbacks, kept, strict=False):
        if cb_state is not None and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(cb_state)
    tokens, stopped = 0, None
    t0 = time.perf_counter()
    step = start
    for step in range(start, cfg.steps):
        batch = batches(step).to(device)
        lr = lr_at(cfg, step)
        for group in opt.param_groups:
            group["lr"] = lr
        if world.distributed:
            mine = batch.shard(world)
            loss = compute(forward, mine) * rank_share(mine, batch, world)
            state.loss = distributed.sum_counts(world, [float(loss.detach())])[0] / world.size
        else:
            loss = compute(model, batch)
            state.loss = float(loss.detach())
        opt.zero_grad(set_to_none=True)
        state.step, state.batch, state.lr, state.skipped = step, batch, lr, False
        finite = math.isfinite(state.loss)
        if finite:
            loss.backward()
            state.grad_norm = total_grad_norm(params)
            finite = math.isfinite(state.grad_norm)
        else:
            state.grad_norm = math.nan
        _call(callbacks, "after_backward", state)
        if not finite:
            if cfg.on_nonfinite == "stop":
                stopped = f"non-finite loss or gradient at step {step}"
                state.skipped = True
                _call(callbacks, "on_step_end", state)
                break
            state.skipped = True
        else:
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
        losses.append(state.loss)
        tokens += int(batch.attention_mask.sum()) if batch.attention_mask is not None \
            else batch.input_ids.numel()
        _call(callbacks, "on_step_end", state)
        if progress is not None:
            progress(step + 1, cfg.steps, state.loss)
        if ckpt is not None and cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
            if not weights_finite(params):
                stopped = f"weights became non-finite by step {step + 1}"
                break
            if world.main:
                save_state(ckpt, model, opt, step + 1, losses, save_model,
                           before + time.perf_counter() - t0, callbacks)
    else:
        step = cfg.steps
    if stopped is None and not weights_finite(params):
        stopped = f"weights became non-finite by step {step}"
    if ckpt is not None and stopped is None and world.main:
        save_state(ckpt, model, opt, cfg.steps, losses, save_model,
                   before + time.perf_counter() - t0, callbacks)
    _call(callbacks, "on_train_end", state)
    model.eval()
    return TrainResult(steps_done=step if stopped else cfg.steps,
                       final_loss=losses[-1] if losses else math.nan, losses=losses,
                       seconds=time.perf_counter() - t0, tokens=tokens, stopped_reason=stopped,
                       seconds_before=before)
