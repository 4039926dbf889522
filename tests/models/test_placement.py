# SPDX-License-Identifier: MIT
"""placement: --device-map values, loading a tiny llama with a device map (on this CPU
every map is one device: the same weights and logits as without one), and reading where
a dispatched or offloaded model's weights live."""

from __future__ import annotations

import json

import pytest
import torch

from thoughtgrad.errors import UserError
from thoughtgrad.models.hf import load_model
from thoughtgrad.models.placement import (
    input_device,
    offloaded,
    parse_device_map,
    spans_devices,
)
from thoughtgrad.models.tiny import save_tiny

CPU_MAP = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
           "model.layers.1": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
"""An explicit per-module map of the tiny llama, every block on the CPU."""


def test_parse_device_map(tmp_path):
    assert parse_device_map(None) is None
    assert parse_device_map("auto") == "auto"
    assert parse_device_map('{"model": 0, "lm_head": "cpu"}') == {"model": 0, "lm_head": "cpu"}
    f = tmp_path / "map.json"
    f.write_text(json.dumps(CPU_MAP))
    assert parse_device_map(str(f)) == CPU_MAP
    for bad, why in [("everywhere", "not one of auto"), ("{nope", "not valid JSON"),
                     ("[1, 2]", "non-empty JSON object"), ("{}", "non-empty JSON object"),
                     ('{"model": true}', "non-empty JSON object"),
                     ('{"model": [0]}', "non-empty JSON object")]:
        with pytest.raises(UserError, match=why):
            parse_device_map(bad)


def test_a_device_map_loads_the_same_model(tmp_path, tiny_tokenizer):
    d = save_tiny(tmp_path / "llama", "llama", tiny_tokenizer, seed=1)
    ids = torch.randint(3, 512, (2, 9))
    want = load_model(d, device="cpu")(input_ids=ids).logits
    for device_map in ("auto", json.dumps(CPU_MAP)):
        model = load_model(d, device_map=device_map, dtype="fp64")
        assert not model.training and model.dtype == torch.float64
        assert input_device(model) == torch.device("cpu") and not spans_devices(model)
        torch.testing.assert_close(model(input_ids=ids).logits.float(), want)


def test_gpt_mini_takes_no_device_map(tmp_path):
    d = save_tiny(tmp_path / "mini", "gpt_mini")
    with pytest.raises(UserError, match="takes --device, not --device-map"):
        load_model(d, device_map="auto")


def test_dispatched_and_offloaded_models(tmp_path):
    """accelerate's hooks on an all-CPU map (forced) and a block offloaded to disk: the
    inputs go to the CPU; only the disk map leaves weights on ``meta`` between calls."""
    from accelerate import dispatch_model

    from thoughtgrad.models.tiny import tiny_model

    hooked = dispatch_model(tiny_model("llama", vocab_size=64), device_map=CPU_MAP,
                            force_hooks=True)
    assert hasattr(hooked, "_hf_hook") and not offloaded(hooked)
    assert input_device(hooked) == torch.device("cpu") and not spans_devices(hooked)
    disk = dict(CPU_MAP, **{"model.embed_tokens": "disk", "model.layers.1": "disk"})
    off = dispatch_model(tiny_model("llama", vocab_size=64), device_map=disk,
                         offload_dir=str(tmp_path / "offload"))
    assert offloaded(off) and input_device(off) == torch.device("cpu")
