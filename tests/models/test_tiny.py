# SPDX-License-Identifier: MIT
"""tiny: the local tokenizer (special tokens, chat template, round trip) and tiny models."""

from __future__ import annotations

import pytest
import torch

from thoughtgrad.errors import UserError
from thoughtgrad.models.tiny import BOS, EOS, PAD, build_tokenizer, tiny_model


def test_tokenizer_special_tokens_and_round_trip(tiny_tokenizer):
    tok = tiny_tokenizer
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == (PAD, BOS, EOS)
    assert tok.pad_token_id == 0 and len(tok) == 512
    text = "Natalia sold 48/2 = 24 clips. ünïcode ✓"
    ids = tok(text).input_ids
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok(text, add_special_tokens=False).input_ids == ids[1:]


def test_chat_template(tiny_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    text = tiny_tokenizer.apply_chat_template(messages, tokenize=False,
                                              add_generation_prompt=True)
    assert text == f"{BOS}<|system|>\nBe brief.{EOS}\n<|user|>\n2+2?{EOS}\n<|assistant|>\n"
    ids = tiny_tokenizer(text, add_special_tokens=False).input_ids
    assert tiny_tokenizer.convert_tokens_to_ids("<|assistant|>") in ids


def test_tokenizer_without_bos_and_custom_texts():
    tok = build_tokenizer(["abc abc abd"] * 3, vocab_size=300, bos=False)
    assert tok.bos_token is None
    assert tok.decode(tok("abc xyz").input_ids) == "abc xyz"


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox", "gpt_mini"])
def test_tiny_model_is_seeded_and_leaves_global_rng(arch):
    state = torch.random.get_rng_state()
    a = tiny_model(arch, vocab_size=64, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state) or arch == "gpt_mini"
    b = tiny_model(arch, vocab_size=64, seed=3)
    c = tiny_model(arch, vocab_size=64, seed=4)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert not a.training and pa.dtype == torch.float32


def test_tiny_model_overrides_and_unknown_arch():
    model = tiny_model("llama", vocab_size=64, hidden_size=48, num_hidden_layers=3)
    assert model.config.hidden_size == 48 and len(model.model.layers) == 3
    assert model.config.num_key_value_heads == 2  # grouped-query attention
    qwen = tiny_model("qwen2", vocab_size=64)
    assert qwen.lm_head.weight is qwen.model.embed_tokens.weight  # tied
    assert qwen.model.layers[0].self_attn.q_proj.bias is not None
    with pytest.raises(UserError, match="unknown architecture"):
        tiny_model("bert", vocab_size=64)
