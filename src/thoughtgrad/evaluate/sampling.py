# SPDX-License-Identifier: MIT
"""Many sampled responses per problem, with the compute each one cost (seed 004).

:func:`sample_responses` draws ``n_samples`` responses for every toy problem of one K
from a gpt_mini in one batch (each prompt repeated ``n_samples`` times, rows in
problem-major order), with temperature / top-k / top-p and an explicit seeded
generator, through :func:`thoughtgrad.evaluate.decoding.generate`. Temperature 0 is
greedy, so every sample of a problem is then the greedy response.

Compute is counted per sample, so every test-time knob shares one x-axis:

* **positions**: token positions that went through the network for this sample with a
  key/value cache: the prompt plus every generated token except the last (the stop
  token is produced but never fed back), ``T0 + N - 1``;
* **FLOPs**: the sum over those positions of ``GPTMini.flops_per_token(context)`` at
  the loop count actually run, with context = the number of positions attended to.

:func:`sample_hf` is the same seeded sampling for a Hugging Face causal LM through its
own ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from numpy import ndarray
from torch import Tensor, nn

from thoughtgrad.errors import UserError
from thoughtgrad.evaluate.accuracy import EVAL_BATCH, max_response_chars
from thoughtgrad.evaluate.decoding import check_decoding, generate
from thoughtgrad.tasks.toy import TOKENIZER, CharTokenizer, Problem, ToyTask, extract_answer


@dataclass
class SampleSet:
    """``n_samples`` decoded responses for each of P problems (S = samples per problem).

    ``texts[p][s]`` is cut after the first ``#``; ``answers[p][s]`` is its parsed answer
    (None when unparseable); ``positions`` and ``flops`` are per-sample compute.
    """

    texts: list[list[str]]
    answers: list[list[int | None]]
    positions: Int[ndarray, "P S"]
    flops: Float[ndarray, "P S"]


def check_sampling(*, n_samples: int = 1, temperature: float = 0.0, top_k: int | None = None,
                   top_p: float | None = None) -> None:
    """One-line :class:`UserError` for impossible sampling options."""
    if n_samples < 1:
        raise UserError(f"samples must be >= 1, got {n_samples}")
    check_decoding(temperature=temperature, top_k=top_k, top_p=top_p)


def cumulative_flops(model: nn.Module, n_loops: int | None = None) -> Float[ndarray, " P1"]:
    """``out[P]`` = forward FLOPs of the first P positions of one sequence (``out[0] = 0``),
    context ``t`` at position ``t`` (1-based), at loop count ``n_loops``."""
    block = model.config.block_size
    per = [model.flops_per_token(t, n_loops=n_loops) for t in range(1, block + 1)]
    return np.concatenate([[0.0], np.cumsum(per)])


def generated_lengths(new: Int[Tensor, "B N"], stop_id: int) -> Int[Tensor, " B"]:
    """Tokens each row generated: up to and including its first ``stop_id``, else all N."""
    B, N = new.shape
    is_stop = new == stop_id  # B N
    first = torch.where(is_stop.any(1), is_stop.int().argmax(1) + 1,
                        torch.full((B,), N, dtype=torch.long, device=new.device))
    return first.long()


@torch.no_grad()
def sample_responses(model: nn.Module, task: ToyTask, problems: Sequence[Problem], style: str,
                     *, n_samples: int, temperature: float, top_k: int | None = None,
                     top_p: float | None = None, generator: torch.Generator | None = None,
                     n_loops: int | None = None, device: torch.device | str = "cpu",
                     tok: CharTokenizer = TOKENIZER, batch_size: int = EVAL_BATCH) -> SampleSet:
    """Decode ``n_samples`` responses per problem (problems of one K) in batches of at most
    ``batch_size`` rows; see the module docstring for the compute counts."""
    check_sampling(n_samples=n_samples, temperature=temperature, top_k=top_k, top_p=top_p)
    P = len(problems)
    if P == 0:
        return SampleSet([], [], np.zeros((0, n_samples), int), np.zeros((0, n_samples)))
    ks = {p.k for p in problems}
    if len(ks) != 1:
        raise ValueError("sample_responses takes problems of a single K")
    cap = max_response_chars(task, ks.pop(), style)
    cum = cumulative_flops(model, n_loops)
    prompts = [tok.encode(p.prompt()) for p in problems]
    T0 = len(prompts[0])
    rows = [prompts[i] for i in range(P) for _ in range(n_samples)]  # problem-major
    texts: list[str] = []
    positions: list[int] = []
    for i in range(0, len(rows), batch_size):
        ids = torch.tensor(rows[i: i + batch_size], device=device)  # b T0
        new = generate(model, ids, max_new_tokens=cap, stop_id=tok.eos_id, pad_id=tok.pad_id,
                       temperature=temperature, top_k=top_k, top_p=top_p,
                       generator=generator, n_loops=n_loops)  # b N
        lengths = generated_lengths(new, tok.eos_id).tolist()
        for row, n in zip(new.tolist(), lengths, strict=True):
            texts.append(tok.decode(row[:n]))
            positions.append(T0 + n - 1)
    pos = np.asarray(positions, dtype=np.int64).reshape(P, n_samples)  # P S
    flops = cum[pos]  # P S
    nested = [texts[j * n_samples:(j + 1) * n_samples] for j in range(P)]
    answers = [[extract_answer(t) for t in row] for row in nested]
    return SampleSet(texts=nested, answers=answers, positions=pos, flops=flops)


@torch.no_grad()
def sample_hf(model: nn.Module, input_ids: Int[Tensor, "B T0"],
              attention_mask: Int[Tensor, "B T0"] | None = None, *, n_samples: int = 1,
              max_new_tokens: int, temperature: float = 0.0, top_k: int | None = None,
              top_p: float | None = None, seed: int = 0, eos_token_id: int | None = None,
              pad_token_id: int | None = None) -> Int[Tensor, "BS N"]:
    """``n_samples`` continuations per prompt from a Hugging Face causal LM; new tokens only.

    Rows are problem-major (prompt 0's samples first). Temperature 0 is greedy search;
    otherwise multinomial sampling from ``softmax(logits / temperature)`` restricted by
    ``top_k`` / ``top_p`` (HF's own warpers). The global torch RNG is seeded with ``seed``
    inside a forked RNG state, so the call is reproducible and leaves the caller's RNG
    untouched. Rows that stop early are padded with ``pad_token_id``.
    """
    check_sampling(n_samples=n_samples, temperature=temperature, top_k=top_k, top_p=top_p)
    greedy = temperature == 0.0
    ids = input_ids.repeat_interleave(n_samples, dim=0)  # BS T0
    mask = None if attention_mask is None else attention_mask.repeat_interleave(n_samples, 0)
    options = dict(max_new_tokens=max_new_tokens, do_sample=not greedy,
                   eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    if greedy:
        options.update(temperature=None, top_k=None, top_p=None)
    else:
        options.update(temperature=temperature, top_k=top_k or 0, top_p=top_p or 1.0)
    model.eval()
    devices = [ids.device] if ids.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = model.generate(input_ids=ids, attention_mask=mask, **options)
    return out[:, ids.shape[1]:]
