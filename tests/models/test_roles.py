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
    assert "'mytype'" in msg and "2 layers under layers, each like layer 0: " in msg
    assert "layers.{i}.wq (4, 4), layers.{i}.w2 (4, 8)" in msg and "layers.1" not in msg
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


class _Deep(nn.Module):
    """126 linear layers in 18 blocks, like Gemma-3-270M, under an unknown model type."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("Cfg", (), {"model_type": "deeptype"})()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList(
            nn.ModuleDict({n: nn.Linear(4, 4, bias=False) for n in
                           ("q_proj", "k_proj", "v_proj", "o_proj", "gate", "up", "down")})
            for _ in range(18))
        self.lm_head = nn.Linear(4, 8, bias=False)


def test_unknown_deep_architecture_message_is_short():
    """One layer's modules and the layer count, not a 9,000-character list of all 126."""
    with pytest.raises(UserError) as err:
        roles.matrix_views(_Deep())
    msg = str(err.value)
    assert len(msg) < 800, msg
    assert "18 layers under model.layers, each like layer 0: model.layers.{i}.q_proj (4, 4)" \
        in msg
    assert "model.layers.{i}.down (4, 4)" in msg and "outside layers: lm_head (8, 4)" in msg
    assert "model.layers.17" not in msg and "\n" not in msg


def _tiny_gemma3(**overrides):
    import transformers as tf

    kw = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=16,
              max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2,
              layer_types=["sliding_attention", "full_attention"])
    kw.update(overrides)
    cfg = tf.Gemma3TextConfig(**kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tf.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager",
                                                    dtype=torch.float32)
    return model.eval()


def test_gemma3_text_roles():
    """Gemma-3 (text; Gemma-3-270M loads as ``gemma3_text``): every matrix has its role."""
    model = _tiny_gemma3()
    assert roles.model_type(model) == "gemma3_text"
    views = roles.matrix_views(model)
    assert [(v.layer, v.role) for v in views] == [(i, r) for i in range(2) for r in roles.ROLES]
    shapes = {v.role: tuple(model.get_parameter(v.param).shape) for v in views if v.layer == 0}
    assert shapes == {"q": (64, 64), "k": (16, 64), "v": (16, 64), "o": (64, 64),
                      "gate": (128, 64), "up": (128, 64), "down": (64, 128)}


def test_gemma3_fast_spectra_match_float64_reference():
    """Sliding and full attention layers, q/k norms, tied embeddings: fast == reference.

    Samples are longer than the window (and than the hidden size). Padding stays shorter
    than the window: in float64, ``transformers`` gives NaN for a padded query whose whole
    window is padding, and 0 x NaN then spreads to every row (float32 is unaffected).
    """
    from thoughtgrad.spectra import layer_spectra

    model = _tiny_gemma3().double()
    gen = torch.Generator().manual_seed(0)
    lengths, prompt = [60, 66, 70], [20, 12, 30]
    ids = torch.randint(3, 512, (3, max(lengths)), generator=gen)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for i, (n, p) in enumerate(zip(lengths, prompt, strict=True)):
        mask[i, :n] = 1
        labels[i, p:n] = ids[i, p:n]
        ids[i, n:] = 0
    fast = layer_spectra(model, ids, labels, mask)
    ref = layer_spectra(model, ids, labels, mask, method="reference")
    assert len(fast) == 3 * 2 * len(roles.ROLES)
    assert fast[["sample", "layer", "role"]].equals(ref[["sample", "layer", "role"]])
    bad = []
    for stat in ("nuclear", "sigma_max", "ratio", "frobenius", "effective_rank", "loss"):
        rel = ((fast[stat] - ref[stat]).abs() / ref[stat].abs()).to_numpy()
        bad += [f"sample {fast['sample'][i]} {fast['param'][i]} {stat}: fast {fast[stat][i]:.10g}"
                f" vs reference {ref[stat][i]:.10g}" for i in range(len(fast)) if rel[i] > 1e-4]
    assert (fast["rank"] == ref["rank"]).all()
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad)


def test_gemma3_multimodal_maps_the_text_decoder_only():
    """``gemma3`` (with a vision tower): the language model's layers, not the vision ones."""
    names = ["model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj",
             "model.language_model.layers.0.self_attn.q_proj",
             "model.language_model.layers.3.mlp.down_proj", "lm_head"]
    table = [(roles._compile(p), r) for p, r in roles._ARCHITECTURES["gemma3"].items()]
    found = {n: next((r for rx, r in table if rx.match(n)), None) for n in names}
    assert found == {names[0]: None, names[1]: "q", names[2]: "down", names[3]: None}
