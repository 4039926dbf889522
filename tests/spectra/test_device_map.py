# SPDX-License-Identifier: MIT
"""Spectra of a model placed by a device map equal those of the same model on one device.

A CPU-only torch has no second device that holds data (``meta`` holds shapes only, and
``disk`` is accelerate's storage, run on the CPU), so on this machine a device map puts
everything on the CPU: ``auto`` and an explicit per-module map are loaded through
``from_pretrained(device_map=...)``, and accelerate's own hooks are exercised by
dispatching with forced hooks and with a block offloaded to disk. The device-following
of the capture is unit-tested with a module whose hook runs it on ``meta``. Placement
over two real devices is the ``gpu`` test at the end (skipped without two CUDA devices).
Tolerance: relative 1e-4 against the float64 reference, as in ``test_exactness.py``.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
from test_exactness import batch, mismatches

from thoughtgrad.errors import UserError
from thoughtgrad.models.hf import load_model
from thoughtgrad.models.tiny import save_tiny, tiny_model
from thoughtgrad.spectra import fast, layer_spectra
from thoughtgrad.spectra.capture import capturing

CPU_MAP = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
           "model.layers.1": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
TWO_GPUS = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.layers.0": 0,
            "model.layers.1": 1, "model.norm": 1, "lm_head": 1}
"""The tiny llama's second block, final norm and LM head on the second GPU."""


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("llama"), "llama", seed=3)


@pytest.fixture(scope="module")
def reference(llama_dir):
    """The float64 reference of the model on one device, and the batch."""
    model = load_model(llama_dir, dtype="fp64", device="cpu")
    ids, labels, mask = batch([9, 21, 40], [4, 12, 30], vocab=len(model.get_input_embeddings()
                                                                   .weight))
    return layer_spectra(model, ids, labels, mask, method="reference"), (ids, labels, mask)


def _placed_statistics(model, ids, labels, mask, monkeypatch):
    """The fast table, and the device each module's statistics were computed on."""
    where: dict[str, set[torch.device]] = {}
    consume = fast._Statistics.__call__

    def spy(self, name, factors, inputs):
        where.setdefault(name, set()).update({factors.x.device, factors.d.device})
        return consume(self, name, factors, inputs)

    monkeypatch.setattr(fast._Statistics, "__call__", spy)
    return layer_spectra(model, ids, labels, mask), where


@pytest.mark.parametrize("device_map", [
    "auto",
    json.dumps(CPU_MAP),
    pytest.param(json.dumps(TWO_GPUS), marks=[pytest.mark.gpu, pytest.mark.skipif(
        torch.cuda.device_count() < 2, reason="needs two CUDA devices")]),
])
def test_device_map_matches_the_reference(llama_dir, reference, device_map, monkeypatch):
    ref, (ids, labels, mask) = reference
    model = load_model(llama_dir, dtype="fp64", device_map=device_map)
    from thoughtgrad.models.placement import input_device

    dev = input_device(model)
    got, where = _placed_statistics(model, ids.to(dev), labels.to(dev), mask.to(dev),
                                    monkeypatch)
    bad = mismatches(got, ref)
    assert not bad, "\n".join(bad)
    for name, devices in where.items():  # X, D and the statistics on the module's device
        assert devices == {model.get_submodule(name).weight.device}, name
    if device_map != "auto":
        assert len({d for ds in where.values() for d in ds}) == len(set(json.loads(
            device_map).values()))


def test_accelerate_hooks_and_disk_offload_give_the_same_table(tmp_path, monkeypatch):
    """Dispatched with accelerate's hooks (forced on an all-CPU map), and with a block
    offloaded to disk (its weights on ``meta`` between calls, loaded per call): the fast
    table is that of the undispatched model, and every ``requires_grad`` is restored."""
    from accelerate import dispatch_model

    base = tiny_model("llama", vocab_size=512).double()
    ids, labels, mask = batch([9, 21, 40], [4, 12, 30])
    want = layer_spectra(base, ids, labels, mask)
    hooked = dispatch_model(copy.deepcopy(base), device_map=CPU_MAP, force_hooks=True)
    disk = dispatch_model(copy.deepcopy(base), device_map=dict(CPU_MAP, **{
        "model.layers.1": "disk"}), offload_dir=str(tmp_path / "offload"))
    for model in (hooked, disk):
        before = {n: p.requires_grad for n, p in model.named_parameters()}
        for recompute in (False, True):  # layer recomputation runs through the hooks too
            got = layer_spectra(model, ids, labels, mask, recompute_layers=recompute)
            bad = mismatches(got, want, rtol=1e-12)
            assert not bad, "\n".join(bad)
        assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    with pytest.raises(UserError, match="offloads"):
        layer_spectra(disk, ids, labels, mask, method="reference")


class _Split(nn.Module):
    """A token embedding on the CPU and a linear layer that accelerate's hook runs on
    ``meta``: the stand-in for a second device."""

    def __init__(self) -> None:
        super().__init__()
        from accelerate.hooks import AlignDevicesHook, add_hook_to_module

        self.tok_emb = nn.Embedding(16, 8)
        self.q = nn.Linear(8, 4)
        self.k = nn.Linear(8, 4)
        self.far = add_hook_to_module(nn.Linear(8, 4), AlignDevicesHook(execution_device="meta"))

    def forward(self, ids):
        h = self.tok_emb(ids)
        return self.q(h), self.k(h), self.far(h)


def test_captured_inputs_follow_the_module_device():
    """The hook delivers ``far``'s input on the CPU and runs it on ``meta``: its ``X`` is
    kept on ``meta``, beside its output (where ``D`` arrives); ``q`` and ``k``, run where
    their input is, keep that very tensor (one shared R factor)."""
    model = _Split()
    ids = torch.randint(0, 16, (2, 5))
    with capturing(model, {"q": model.q, "k": model.k, "far": model.far}) as cap:
        _, _, out = model(ids)
        assert out.device.type == "meta"
        assert cap.inputs["far"][0].device.type == "meta"
        assert cap.inputs["q"][0].device.type == "cpu"
        assert cap.inputs["q"][0].data_ptr() == cap.inputs["k"][0].data_ptr()
