# SPDX-License-Identifier: MIT
"""roles: every architecture maps every attention/MLP matrix; fused splits are right."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from thoughtgrad.errors import UserError
from thoughtgrad.models import roles
from thoughtgrad.models.tiny import ARCHS, tiny_model

HEADS_NOT_MATRICES = {"lm_head", "embed_out"}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_linear_layer_has_one_role_per_layer(arch):
    model = tiny_model(arch, vocab_size=64)
    views = roles.matrix_views(model, include_fused=True)
    linear = {name for name, mod in model.named_modules()
              if getattr(mod, "weight", None) is not None and mod.weight.dim() == 2
              and not isinstance(mod, nn.Embedding) and name not in HEADS_NOT_MATRICES}
    assert {v.module for v in views} == linear
    plain = [(v.layer, v.role) for v in views if v.role in roles.ROLES]
    assert len(plain) == len(set(plain))
    expected = set(roles.ROLES) - ({"gate"} if arch in ("gpt2", "gpt_neox", "gpt_mini") else set())
    for layer in range(2):
        assert {r for lyr, r in plain if lyr == layer} == expected
    for v in views:
        assert v.param == f"{v.module}.weight"
        model.get_parameter(v.param)


def _zero_rows(module: nn.Module, rows: torch.Tensor) -> None:
    out_axis = 1 if type(module).__name__ == "Conv1D" else 0
    with torch.no_grad():
        module.weight.index_fill_(out_axis, rows, 0.0)
        if module.bias is not None:
            module.bias.index_fill_(0, rows, 0.0)


FUSED = {"gpt2": "transformer.h.0.attn.c_attn",
         "gpt_neox": "gpt_neox.layers.0.attention.query_key_value",
         "phi3": "model.layers.0.self_attn.qkv_proj"}
OUT_PROJ = {"gpt2": "transformer.h.0.attn.c_proj",
            "gpt_neox": "gpt_neox.layers.0.attention.dense",
            "phi3": "model.layers.0.self_attn.o_proj"}


@pytest.mark.parametrize("arch", sorted(FUSED))
@pytest.mark.parametrize("role", ["q", "k"])
def test_zeroing_fused_q_or_k_rows_makes_attention_uniform(arch, role):
    """q = 0 or k = 0 gives scores 0: uniform causal attention (rotary keeps 0 at 0).

    A wrong split (e.g. contiguous thirds for the per-head NeoX layout) zeroes parts of
    other roles instead and the attention stays non-uniform.
    """
    model = tiny_model(arch, vocab_size=64).double()
    view = next(v for v in roles.matrix_views(model) if v.module == FUSED[arch] and v.role == role)
    _zero_rows(model.get_submodule(view.module), view.rows)
    ids = torch.randint(3, 64, (1, 6))
    att = model(input_ids=ids, output_attentions=True).attentions[0][0]  # H T T
    uniform = torch.tril(torch.ones(6, 6, dtype=torch.float64))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    torch.testing.assert_close(att, uniform.expand_as(att))


@pytest.mark.parametrize("arch", sorted(FUSED))
def test_zeroing_fused_v_rows_zeroes_attention_output_only(arch):
    model = tiny_model(arch, vocab_size=64).double()
    view = next(v for v in roles.matrix_views(model) if v.module == FUSED[arch] and v.role == "v")
    _zero_rows(model.get_submodule(view.module), view.rows)
    seen = {}
    hook = model.get_submodule(OUT_PROJ[arch]).register_forward_hook(
        lambda _m, inp, _o: seen.update(x=inp[0]))
    ids = torch.randint(3, 64, (1, 6))
    att = model(input_ids=ids, output_attentions=True).attentions[0][0]
    hook.remove()
    assert seen["x"].abs().max() == 0
    assert not torch.allclose(att[:, -1], torch.full_like(att[:, -1], 1 / 6))  # q, k intact


def test_phi3_gate_up_split_matches_the_mlp():
    model = tiny_model("phi3", vocab_size=64).double()
    mlp = model.model.layers[0].mlp
    views = {v.role: v for v in roles.matrix_views(model) if v.module.endswith("gate_up_proj")
             and v.layer == 0}
    seen = {}
    h1 = mlp.gate_up_proj.register_forward_hook(lambda _m, inp, _o: seen.update(x=inp[0]))
    h2 = mlp.down_proj.register_forward_hook(lambda _m, inp, _o: seen.update(h=inp[0]))
    model(input_ids=torch.randint(3, 64, (1, 5)))
    h1.remove()
    h2.remove()
    w = mlp.gate_up_proj.weight
    gate = seen["x"] @ w[views["gate"].rows].T
    up = seen["x"] @ w[views["up"].rows].T
    torch.testing.assert_close(seen["h"], torch.nn.functional.silu(gate) * up)


def test_gqa_k_and_v_are_smaller():
    model = tiny_model("phi3", vocab_size=64)
    rows = {v.role: len(v.rows) for v in roles.matrix_views(model) if v.rows is not None
            and v.layer == 0 and v.role in ("q", "k", "v")}
    assert rows == {"q": 32, "k": 16, "v": 16}


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = type("Cfg", (), {"model_type": "mytype"})()
        self.layers = nn.ModuleList(nn.ModuleDict({"wq": nn.Linear(4, 4), "w2": nn.Linear(8, 4)})
                                    for _ in range(2))


def test_unknown_architecture_lists_layers_and_how_to_map(monkeypatch):
    model = _Custom()
    with pytest.raises(UserError) as err:
        roles.matrix_views(model)
    msg = str(err.value)
    assert "'mytype'" in msg and "layers.0.wq (4, 4)" in msg and "layers.1.w2 (4, 8)" in msg
    assert "register_architecture" in msg and "\n" not in msg
    monkeypatch.setitem(roles._ARCHITECTURES, "mytype", {})
    roles.register_architecture("mytype", {"layers.{i}.wq": "q", "layers.{i}.w2": "down"})
    got = [(v.layer, v.role, v.module) for v in roles.matrix_views(model)]
    assert got == [(0, "q", "layers.0.wq"), (0, "down", "layers.0.w2"),
                   (1, "q", "layers.1.wq"), (1, "down", "layers.1.w2")]
    with pytest.raises(UserError, match="unknown role"):
        roles.register_architecture("mytype", {"layers.{i}.wq": "query"})


def test_split_fused_partitions_rows():
    cfg = type("Cfg", (), {"num_attention_heads": 2})()
    split = roles.split_fused("qkv_per_head", 12, cfg)
    assert split["q"].tolist() == [0, 1, 6, 7]
    assert split["k"].tolist() == [2, 3, 8, 9]
    assert split["v"].tolist() == [4, 5, 10, 11]
    with pytest.raises(UserError):
        roles.split_fused("gate_up", 7, cfg)
