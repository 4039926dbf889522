# SPDX-License-Identifier: MIT
"""Tiny random-init causal LMs and a locally trained tokenizer: offline tests and demos.

Nothing here downloads anything. :func:`build_tokenizer` trains a byte-level BPE with the
``tokenizers`` library on a few sentences (or your texts) and wraps it as a
``PreTrainedTokenizerFast`` with BOS/EOS/PAD tokens and a system/user/assistant chat
template. :func:`tiny_model` builds a seeded, random-init model of a real architecture
(llama with grouped-query attention, qwen2 with biases and tied embeddings, gpt2 with
``Conv1D`` and fused ``c_attn``, gpt_neox with per-head fused ``query_key_value``, phi3
with fused ``qkv_proj``/``gate_up_proj``, mistral, gemma, gemma2, and the toy gpt_mini),
hidden 32, 2 layers, fp32, eager attention. :func:`save_tiny` writes one to a directory
that :func:`thoughtgrad.models.hf.load_model` reads back.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from thoughtgrad.errors import UserError

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
CHAT_ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
"""System/user/assistant turns, each closed by EOS; the generation prompt opens an
assistant turn. BOS (when the tokenizer has one) starts the text, as in Llama 3."""

DEFAULT_CORPUS: tuple[str, ...] = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?",
    "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in "
    "April and May. The final answer is 72.",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of "
    "babysitting. How much did she earn? Step 1: 12/60 = 0.2 per minute. Step 2: "
    "0.2 x 50 = 10. The final answer is 10.",
    "Question: Is the sun a star? Answer: yes. Let's think step by step.",
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n### Instruction:\nAdd 3 and 4.\n### Response:\n3 + 4 = 7",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 + - * / = ( ) .",
    "A train travels 60 miles per hour for 3 hours, so it travels 60 * 3 = 180 miles.",
    "Wikipedia is a free online encyclopedia written collaboratively by volunteers.",
)
"""A few sentences in the style of the shared data (math word problems, rationales)."""

ARCHS: tuple[str, ...] = ("llama", "mistral", "qwen2", "gemma", "gemma2", "phi3", "gpt2",
                          "gpt_neox", "gpt_mini")
"""Architectures :func:`tiny_model` builds."""


def build_tokenizer(texts: Iterable[str] | None = None, *, vocab_size: int = 512,
                    bos: bool = True) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained locally on ``texts``.

    Special tokens: ``<|pad|>`` (id 0), ``<|bos|>``, ``<|eos|>`` and the chat role markers.
    With ``bos`` true, encoding with ``add_special_tokens=True`` prepends BOS (as Llama
    does) and the chat template starts with it. Byte-level, so any text round-trips.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = list(DEFAULT_CORPUS if texts is None else texts)
    specials = [PAD, BOS, EOS, *CHAT_ROLE_TOKENS]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    if bos:
        bos_id = tok.token_to_id(BOS)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, bos_token=BOS if bos else None,
        additional_special_tokens=list(CHAT_ROLE_TOKENS), padding_side="right",
        model_max_length=4096)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _hf_config(arch: str, vocab_size: int, overrides: dict[str, Any]) -> Any:
    """A tiny config of ``arch``: hidden 32, 2 layers, 4 heads, eager attention."""
    import transformers as tf

    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                  num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=512,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    if arch in ("llama", "mistral"):
        cls = tf.LlamaConfig if arch == "llama" else tf.MistralConfig
        kw = dict(common, num_key_value_heads=2)
        if arch == "mistral":
            kw["sliding_window"] = None
    elif arch == "qwen2":
        cls, kw = tf.Qwen2Config, dict(common, num_key_value_heads=2, tie_word_embeddings=True)
    elif arch in ("gemma", "gemma2"):
        cls = tf.GemmaConfig if arch == "gemma" else tf.Gemma2Config
        kw = dict(common, num_key_value_heads=2, head_dim=8, tie_word_embeddings=True)
    elif arch == "phi3":
        cls, kw = tf.Phi3Config, dict(common, num_key_value_heads=2)
    elif arch == "gpt2":
        cls = tf.GPT2Config
        kw = dict(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=512,
                  bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    elif arch == "gpt_neox":
        cls = tf.GPTNeoXConfig
        kw = dict(common, attention_bias=True)
    else:
        raise UserError(f"tiny_model: unknown architecture {arch!r}; choose one of "
                        f"{', '.join(ARCHS)}")
    kw.update(overrides)
    cfg = cls(**kw)
    cfg._attn_implementation = "eager"
    return cfg


def tiny_model(arch: str, *, vocab_size: int, seed: int = 0, **overrides: Any) -> nn.Module:
    """A seeded random-init causal LM of architecture ``arch`` in eval mode, fp32.

    ``overrides`` replace config fields (e.g. ``hidden_size=64``, ``num_hidden_layers=3``;
    for gpt_mini the :class:`~thoughtgrad.models.gpt_mini.GPTMiniConfig` fields). The
    global RNG is left untouched.
    """
    if arch == "gpt_mini":
        from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig

        kw = dict(vocab_size=vocab_size, d_model=32, n_layer=2, n_head=4, block_size=512,
                  seed=seed)
        kw.update(overrides)
        return GPTMini(GPTMiniConfig(**kw)).eval()
    from transformers import AutoModelForCausalLM

    cfg = _hf_config(arch, vocab_size, overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager",
                                                 dtype=torch.float32)
    return model.eval()


def save_tiny(directory: str | Path, arch: str, tokenizer: Any = None, *, seed: int = 0,
              **overrides: Any) -> Path:
    """Write a :func:`tiny_model` (safetensors) and its tokenizer into ``directory``.

    Without ``tokenizer`` the default :func:`build_tokenizer` is used; the model's vocabulary
    matches the tokenizer. gpt_mini checkpoints carry a tokenizer only when one is given
    (the toy lab uses its own character tokenizer).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer() if tokenizer is None else tokenizer
    model = tiny_model(arch, vocab_size=len(tok), seed=seed, **overrides)
    if arch == "gpt_mini":
        model.save(d)
        if tokenizer is not None:
            tokenizer.save_pretrained(d)
        return d
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d
