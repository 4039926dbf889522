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


@pytest.mark.parametrize("keep", [10, 0.5])
def test_truncated_safetensors_is_one_line_naming_the_file(tmp_path, tiny_tokenizer, keep):
    """Every caller (spectra, hessian, train, surprisal) loads through here."""
    d = save_tiny(tmp_path / "m", "llama", tiny_tokenizer)
    weights = d / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(UserError) as err:
        load_model(d, device="cpu")
    msg = str(err.value)
    assert msg.startswith(f"model directory {d}: model.safetensors is truncated or corrupt (")
    assert "\n" not in msg


@pytest.fixture
def no_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.mark.parametrize("call", [load_model, load_tokenizer])
def test_offline_hub_id_fails_fast_in_one_line(monkeypatch, no_hub_cache, call):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        call("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert msg.startswith("model HuggingFaceTB/SmolLM2-135M-Instruct: no such local directory")
    assert "offline" in msg and "pkg:smollm2-135m-instruct" in msg and "tokenizer" not in msg


def test_unreachable_hub_fails_fast_in_one_line(monkeypatch, no_hub_cache):
    from thoughtgrad.models import hf

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hf, "_hub_reachable", lambda: False)
    with pytest.raises(UserError, match="the hub is unreachable"):
        load_tokenizer("some-org/some-model")
