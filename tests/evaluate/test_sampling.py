# SPDX-License-Identifier: MIT
"""Batched, seeded sampling: temperature 0 equals greedy, the sampled distribution is
softmax(logits / T), compute counts match a hand sum; the HF path through generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thoughtgrad.errors import UserError
from thoughtgrad.evaluate.accuracy import max_response_chars
from thoughtgrad.evaluate.sampling import (
    cumulative_flops,
    generated_lengths,
    sample_hf,
    sample_responses,
)
from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig
from thoughtgrad.tasks.toy import TOKENIZER, Problem, get_task

TASK = get_task("addition")
PROBLEMS = [Problem((3, 4, 5), ("+", "+")), Problem((9, 9, 1), ("+", "+")),
            Problem((0, 2, 7), ("+", "+"))]


def toy_model(n_loops: int = 1, seed: int = 5) -> GPTMini:
    cfg = GPTMiniConfig(vocab_size=TOKENIZER.vocab_size, block_size=64, n_layer=2, n_head=2,
                        d_model=32, n_loops=n_loops, seed=seed)
    model = GPTMini(cfg).eval()
    with torch.no_grad():  # make '#' likely so some rows stop early and lengths differ
        model.lm_head.weight[TOKENIZER.eos_id] += 0.15 * model.ln_f.weight.sign()
    return model


def greedy_oracle(model: GPTMini, prompt: str, cap: int, n_loops: int | None = None):
    """Full forward (no cache) argmax decoding, one token at a time, until '#'."""
    ids = TOKENIZER.encode(prompt)
    out: list[int] = []
    for _ in range(min(cap, model.config.block_size - len(ids))):
        with torch.no_grad():
            logits = model(torch.tensor([ids + out]), n_loops=n_loops).logits[0, -1]
        out.append(int(logits.argmax()))
        if out[-1] == TOKENIZER.eos_id:
            break
    return TOKENIZER.decode(out), len(ids) + len(out) - 1


@pytest.mark.parametrize("n_loops", [None, 3])
def test_temperature_zero_samples_equal_greedy_tokens(n_loops):
    model = toy_model(n_loops=2)
    cap = max_response_chars(TASK, 3, "cot")
    s = sample_responses(model, TASK, PROBLEMS, "cot", n_samples=4, temperature=0.0,
                         n_loops=n_loops, batch_size=5)  # 12 rows in 3 uneven batches
    for p, texts, pos in zip(PROBLEMS, s.texts, s.positions, strict=True):
        want, want_pos = greedy_oracle(model, p.prompt(), cap, n_loops)
        assert texts == [want] * 4
        assert list(pos) == [want_pos] * 4


def test_top_k_one_is_greedy_at_any_temperature():
    model = toy_model()
    g = torch.Generator().manual_seed(0)
    a = sample_responses(model, TASK, PROBLEMS, "answer", n_samples=3, temperature=1.5,
                         top_k=1, generator=g)
    b = sample_responses(model, TASK, PROBLEMS, "answer", n_samples=3, temperature=0.0)
    assert a.texts == b.texts


def test_seeded_sampling_is_reproducible_and_seed_dependent():
    model = toy_model()

    def draw(seed):
        return sample_responses(model, TASK, PROBLEMS, "cot", n_samples=6, temperature=1.0,
                                generator=torch.Generator().manual_seed(seed)).texts

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_first_token_frequencies_follow_softmax_over_temperature():
    model = toy_model()
    p = PROBLEMS[0]
    T, n, top_k = 0.7, 2000, 4
    with torch.no_grad():
        logits = model(torch.tensor([TOKENIZER.encode(p.prompt())])).logits[0, -1] / T
    probs = logits.softmax(-1).numpy()
    for k in (None, top_k):
        s = sample_responses(model, TASK, [p], "answer", n_samples=n, temperature=T, top_k=k,
                             generator=torch.Generator().manual_seed(3))
        first = np.array([TOKENIZER.stoi[t[0]] for t in s.texts[0]])
        freq = np.bincount(first, minlength=len(probs)) / n
        want = probs.copy()
        if k is not None:
            keep = np.argsort(-probs)[:k]
            want = np.zeros_like(probs)
            want[keep] = probs[keep] / probs[keep].sum()
        sd = np.sqrt(want * (1 - want) / n)
        assert np.all(np.abs(freq - want) <= 5 * sd + 1e-3), (freq, want)


def test_compute_counts_match_a_hand_sum():
    model = toy_model(n_loops=2)
    s = sample_responses(model, TASK, PROBLEMS, "cot", n_samples=3, temperature=1.0,
                         generator=torch.Generator().manual_seed(0), n_loops=4)
    T0 = len(PROBLEMS[0].prompt())
    for texts, pos, fl in zip(s.texts, s.positions, s.flops, strict=True):
        for text, n_pos, n_flops in zip(texts, pos, fl, strict=True):
            assert n_pos == T0 + len(text) - 1
            assert n_flops == pytest.approx(sum(model.flops_per_token(t, n_loops=4)
                                          for t in range(1, n_pos + 1)), rel=1e-12)
    cum = cumulative_flops(model)
    assert cum[0] == 0 and cum[3] == pytest.approx(sum(model.flops_per_token(t)
                                                       for t in (1, 2, 3)))


def test_generated_lengths_count_up_to_the_first_stop():
    new = torch.tensor([[5, 9, 0, 0], [5, 5, 5, 5], [9, 0, 0, 0], [1, 9, 9, 0]])
    assert generated_lengths(new, 9).tolist() == [2, 4, 1, 2]


@pytest.mark.parametrize("kw,match", [
    ({"n_samples": 0, "temperature": 1.0}, "samples must be >= 1"),
    ({"n_samples": 2, "temperature": -0.5}, "temperature must be >= 0"),
    ({"n_samples": 2, "temperature": 1.0, "top_k": 0}, "top_k"),
    ({"n_samples": 2, "temperature": 1.0, "top_p": 1.5}, "top_p"),
])
def test_bad_sampling_options_are_one_line_errors(kw, match):
    with pytest.raises(UserError, match=match):
        sample_responses(toy_model(), TASK, PROBLEMS, "answer", **kw)


# -- Hugging Face models --------------------------------------------------------------------
def hf_greedy_oracle(model, ids: torch.Tensor, steps: int) -> torch.Tensor:
    out = ids
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=out, use_cache=False).logits[:, -1]
        out = torch.cat([out, logits.argmax(-1, keepdim=True)], 1)
    return out[:, ids.shape[1]:]


@pytest.fixture(scope="module")
def hf_llama(tiny_tokenizer):
    tiny = pytest.importorskip("thoughtgrad.models.tiny",
                               reason="thoughtgrad.models.tiny (tiny HF models) not available")
    return tiny.tiny_model("llama", vocab_size=len(tiny_tokenizer), seed=0)


def test_hf_temperature_zero_equals_greedy(hf_llama, tiny_tokenizer):
    ids = torch.tensor([tiny_tokenizer.encode("3 + 4 = ")] * 2)
    got = sample_hf(hf_llama, ids, n_samples=3, max_new_tokens=6, temperature=0.0,
                    pad_token_id=tiny_tokenizer.pad_token_id)
    want = hf_greedy_oracle(hf_llama, ids[:1], 6)
    assert got.shape == (6, 6)
    assert (got == want).all()


def test_hf_sampling_is_seeded_and_leaves_global_rng_alone(hf_llama, tiny_tokenizer):
    ids = torch.tensor([tiny_tokenizer.encode("The train travels")])
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = sample_hf(hf_llama, ids, n_samples=8, max_new_tokens=5, temperature=1.0, top_k=50,
                  top_p=0.95, seed=7, pad_token_id=tiny_tokenizer.pad_token_id)
    assert torch.rand(1) == before  # the caller's RNG stream is unchanged
    b = sample_hf(hf_llama, ids, n_samples=8, max_new_tokens=5, temperature=1.0, top_k=50,
                  top_p=0.95, seed=7, pad_token_id=tiny_tokenizer.pad_token_id)
    c = sample_hf(hf_llama, ids, n_samples=8, max_new_tokens=5, temperature=1.0, top_k=50,
                  top_p=0.95, seed=8, pad_token_id=tiny_tokenizer.pad_token_id)
    assert a.shape == (8, 5) and torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(r) for r in a.tolist()}) > 1  # samples of one prompt differ
