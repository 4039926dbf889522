# SPDX-License-Identifier: MIT
"""hf: load tiny saved models and tokenizers offline; one-line errors for bad directories."""

from __future__ import annotations

import pytest
import torch

from thoughtgrad.errors import UserError
from thoughtgrad.models.gpt_mini import GPTMini
from thoughtgrad.models.hf import load_model, load_tokenizer
from thoughtgrad.models.tiny import save_tiny, tiny_model


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_saved_tiny_model_loads_with_same_logits(tmp_path, arch, tiny_tokenizer):
    d = save_tiny(tmp_path / arch, arch, tiny_tokenizer, seed=1)
    assert (d / "model.safetensors").is_file()
    model = load_model(d, device="cpu")
    assert not model.training
    ids = torch.randint(3, 512, (1, 7))
    want = tiny_model(arch, vocab_size=512, seed=1)(input_ids=ids).logits
    torch.testing.assert_close(model(input_ids=ids).logits, want)
    tok = load_tokenizer(d)
    assert tok("2+2").input_ids == tiny_tokenizer("2+2").input_ids
    assert tok.chat_template == tiny_tokenizer.chat_template
    assert load_model(d, dtype="bf16", device="cpu").dtype == torch.bfloat16


def test_gpt_mini_checkpoint_dir(tmp_path):
    d = save_tiny(tmp_path / "mini", "gpt_mini")
    model = load_model(d, device="cpu")
    assert isinstance(model, GPTMini) and not model.training
    with pytest.raises(UserError, match="no tokenizer"):
        load_tokenizer(d)


def test_directory_without_weights(tmp_path, tiny_tokenizer):
    d = save_tiny(tmp_path / "m", "llama", tiny_tokenizer)
    (d / "model.safetensors").unlink()
    with pytest.raises(UserError, match=rf"{d}: no weights"):
        load_model(d)


@pytest.mark.parametrize("name, message", [("./no/such/dir", "no such directory"),
                                           ("/tmp/definitely/not/here", "no such directory")])
def test_missing_directory(name, message):
    with pytest.raises(UserError, match=message):
        load_model(name)


def test_directory_without_config(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_model(tmp_path)
