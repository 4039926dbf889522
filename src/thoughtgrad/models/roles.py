# SPDX-License-Identifier: MIT
"""Which weight matrix plays which role: parameter names -> ``(layer, role)`` by architecture.

The table is keyed by ``config.model_type`` (never by a model's name). Each architecture
maps module-name patterns, with ``{i}`` standing for the 0-based layer index, to a role:

* a plain role ``q k v o gate up down``: the whole weight is that matrix;
* a fused layout, split into plain roles by :func:`split_fused` (the one place that knows
  how fused weights are laid out) and reported as a whole under its stored role:

  ``qkv``          rows ``[q | k | v]`` in contiguous blocks (GPT-2 ``c_attn``, Phi-3
                   ``qkv_proj``; k and v may be smaller under grouped-query attention);
  ``qkv_per_head`` rows interleaved per head, ``[H, 3, Dh]`` (GPT-NeoX / Pythia
                   ``query_key_value``: the forward views the output as ``(..., H, 3 Dh)``
                   and chunks the last dim into q, k, v);
  ``gate_up``      rows ``[gate | up]`` (Phi-3 ``gate_up_proj``).

"Rows" are the weight's output features (for ``transformers``' ``Conv1D``, which stores
its weight as in x out, they are the weight's columns; slicing the output gradient ``D``
covers both). A new family is one call::

    roles.register_architecture("mytype", {
        "model.layers.{i}.attn.wq": "q", "model.layers.{i}.attn.wk": "k",
        "model.layers.{i}.attn.wv": "v", "model.layers.{i}.attn.wo": "o",
        "model.layers.{i}.ffn.w1": "gate", "model.layers.{i}.ffn.w3": "up",
        "model.layers.{i}.ffn.w2": "down",
    })
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

from thoughtgrad.errors import UserError

ROLES: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")
"""Canonical roles of the per-layer weight matrices, in report order."""

FUSED_ROLES: tuple[str, ...] = ("qkv", "gate_up")
"""Roles under which a fused stored parameter is reported whole."""

FUSED_LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "qkv": ("qkv", ("q", "k", "v")),
    "qkv_per_head": ("qkv", ("q", "k", "v")),
    "gate_up": ("gate_up", ("gate", "up")),
}
"""Fused layout -> (stored role, the plain roles split out of it)."""

_LLAMA_LIKE = {
    "model.layers.{i}.self_attn.q_proj": "q",
    "model.layers.{i}.self_attn.k_proj": "k",
    "model.layers.{i}.self_attn.v_proj": "v",
    "model.layers.{i}.self_attn.o_proj": "o",
    "model.layers.{i}.mlp.gate_proj": "gate",
    "model.layers.{i}.mlp.up_proj": "up",
    "model.layers.{i}.mlp.down_proj": "down",
}

_ARCHITECTURES: dict[str, dict[str, str]] = {
    **{name: dict(_LLAMA_LIKE) for name in (
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo",
        "olmo2")},
    # Gemma-3 with its vision tower (Gemma3ForConditionalGeneration): the text decoder only
    "gemma3": {k.replace("model.layers", "language_model.layers"): r
               for k, r in _LLAMA_LIKE.items()},
    "phi3": {
        "model.layers.{i}.self_attn.qkv_proj": "qkv",
        "model.layers.{i}.self_attn.o_proj": "o",
        "model.layers.{i}.mlp.gate_up_proj": "gate_up",
        "model.layers.{i}.mlp.down_proj": "down",
    },
    "gpt2": {
        "transformer.h.{i}.attn.c_attn": "qkv",
        "transformer.h.{i}.attn.c_proj": "o",
        "transformer.h.{i}.mlp.c_fc": "up",
        "transformer.h.{i}.mlp.c_proj": "down",
    },
    "gpt_neox": {
        "gpt_neox.layers.{i}.attention.query_key_value": "qkv_per_head",
        "gpt_neox.layers.{i}.attention.dense": "o",
        "gpt_neox.layers.{i}.mlp.dense_h_to_4h": "up",
        "gpt_neox.layers.{i}.mlp.dense_4h_to_h": "down",
    },
    "gpt_mini": {
        "blocks.{i}.attn.q": "q",
        "blocks.{i}.attn.k": "k",
        "blocks.{i}.attn.v": "v",
        "blocks.{i}.attn.o": "o",
        "blocks.{i}.mlp.up": "up",
        "blocks.{i}.mlp.down": "down",
    },
}


@dataclass(frozen=True)
class MatrixView:
    """One reported weight matrix: a whole parameter or a row block of a fused one.

    ``rows`` are the output-feature indices of the view inside the stored parameter
    (``None``: all of them). ``module`` is the module path, ``param`` the parameter name.
    """

    module: str
    param: str
    layer: int
    role: str
    rows: torch.Tensor | None = None


def register_architecture(model_type: str, patterns: Mapping[str, str]) -> None:
    """Map the modules of ``model_type`` to roles (see the module docstring).

    Keys are module paths with ``{i}`` for the layer index (a prefix such as a PEFT
    wrapper's ``base_model.model.`` is allowed); values are a plain role or a fused layout
    (``qkv``, ``qkv_per_head``, ``gate_up``). Replaces an existing entry.
    """
    for pattern, role in patterns.items():
        if role not in ROLES and role not in FUSED_LAYOUTS:
            raise UserError(f"register_architecture({model_type!r}): pattern {pattern!r} has "
                            f"unknown role {role!r}; use one of "
                            f"{', '.join(ROLES + tuple(FUSED_LAYOUTS))}")
        if "{i}" not in pattern:
            raise UserError(f"register_architecture({model_type!r}): pattern {pattern!r} has no "
                            "'{i}' layer placeholder")
    _ARCHITECTURES[model_type] = dict(patterns)


def known_architectures() -> list[str]:
    """Model types with a role table."""
    return sorted(_ARCHITECTURES)


def model_type(model: nn.Module) -> str:
    """``config.model_type`` of a Hugging Face model (``"gpt_mini"`` for the toy decoder)."""
    config = getattr(model, "config", None)
    name = getattr(config, "model_type", None)
    if not name:
        raise UserError(f"model {type(model).__name__} has no config.model_type; register its "
                        "layers with thoughtgrad.models.roles.register_architecture")
    return str(name)


def _compile(pattern: str) -> re.Pattern[str]:
    body = re.escape(pattern).replace(re.escape("{i}"), r"(?P<layer>\d+)")
    return re.compile(r"(?:^|.*\.)" + body + r"$")


def _linear_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules with a 2-D ``weight`` (nn.Linear, Conv1D and the like)."""
    return [(name, mod) for name, mod in model.named_modules()
            if isinstance(getattr(mod, "weight", None), torch.Tensor) and mod.weight.dim() == 2
            and not isinstance(mod, nn.Embedding)]


MAX_LISTED = 8
"""Linear modules an unknown-architecture message names when they have no layer index."""

_LAYER_INDEX = re.compile(r"\.(\d+)\.")


def _layer_summary(model: nn.Module) -> str:
    """Each layer stack's count and its first layer's linear modules (``{i}`` for the index).

    Listing every module of a deep model would make one line of thousands of characters.
    """
    stacks: dict[str, list[tuple[int, str]]] = {}
    loose = []
    for name, mod in _linear_modules(model):
        match = _LAYER_INDEX.search(f".{name}.")
        if match is None:
            loose.append(f"{name} {tuple(mod.weight.shape)}")
            continue
        start, end = match.start(1) - 1, match.end(1) - 1  # in ``name``
        pattern = f"{name[:start]}{{i}}{name[end:]} {tuple(mod.weight.shape)}"
        stacks.setdefault(name[:start], []).append((int(match.group(1)), pattern))
    parts = []
    for stack, found in stacks.items():
        first = min(i for i, _ in found)
        count = len({i for i, _ in found})
        mods = [p for i, p in found if i == first]
        parts.append(f"{count} layers under {stack.rstrip('.')}, each like layer {first}: "
                     f"{', '.join(mods)}")
    if loose:
        more = f" and {len(loose) - MAX_LISTED} more" if len(loose) > MAX_LISTED else ""
        parts.append(f"outside layers: {', '.join(loose[:MAX_LISTED])}{more}")
    return "; ".join(parts) or "none found"


def _unknown_message(kind: str, model: nn.Module) -> str:
    return (f"no role table for architecture {kind!r} (known: {', '.join(known_architectures())}); "
            f"linear layers: {_layer_summary(model)}; map them with "
            f"thoughtgrad.models.roles.register_architecture({kind!r}, "
            "{'model.layers.{i}.self_attn.q_proj': 'q', ...}) using roles "
            f"{', '.join(ROLES)} or fused layouts {', '.join(FUSED_LAYOUTS)}")


def _head_sizes(config: object, out_features: int) -> tuple[int, int, int]:
    """(heads, kv heads, head dim) from a config, defaulting to plain multi-head attention."""
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    if heads is None:
        raise UserError("fused attention weight: config has no num_attention_heads")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None)
    if not head_dim:
        head_dim = out_features // (heads + 2 * kv_heads)
    return int(heads), int(kv_heads), int(head_dim)


def split_fused(layout: str, out_features: int, config: object) -> dict[str, torch.Tensor]:
    """Output-feature indices of each plain role inside a fused weight.

    The one place that knows fused layouts (see the module docstring). Returns a dict
    ``role -> LongTensor`` of row indices, in the order of ``FUSED_LAYOUTS[layout]``; the
    blocks partition ``range(out_features)``.
    """
    if layout == "gate_up":
        if out_features % 2:
            raise UserError(f"fused gate_up weight has an odd output size {out_features}")
        half = out_features // 2
        return {"gate": torch.arange(0, half), "up": torch.arange(half, out_features)}
    heads, kv_heads, head_dim = _head_sizes(config, out_features)
    if layout == "qkv":
        q, kv = heads * head_dim, kv_heads * head_dim
        if q + 2 * kv != out_features:
            raise UserError(f"fused qkv weight: {out_features} output features do not match "
                            f"{heads} heads + 2 x {kv_heads} kv heads of size {head_dim}")
        return {"q": torch.arange(0, q), "k": torch.arange(q, q + kv),
                "v": torch.arange(q + kv, out_features)}
    if layout == "qkv_per_head":
        if heads != kv_heads or out_features != 3 * heads * head_dim:
            raise UserError(f"fused per-head qkv weight: {out_features} output features are not "
                            f"3 x {heads} heads x {head_dim}")
        grid = torch.arange(out_features).view(heads, 3, head_dim)  # H 3 Dh
        return {"q": grid[:, 0].reshape(-1), "k": grid[:, 1].reshape(-1),
                "v": grid[:, 2].reshape(-1)}
    raise UserError(f"unknown fused layout {layout!r}; known: {', '.join(FUSED_LAYOUTS)}")


def _out_features(module: nn.Module) -> int:
    """Output size of a linear-like module (``Conv1D`` stores its weight as in x out)."""
    nf = getattr(module, "nf", None)
    if nf is not None:
        return int(nf)
    return int(module.weight.shape[0])


def matrix_views(model: nn.Module, *, roles: Iterable[str] | None = None,
                 include_fused: bool = False) -> list[MatrixView]:
    """Every reported weight matrix of ``model``, ordered by layer, then role.

    ``roles`` filters (default: all of ``q k v o gate up down`` the model has); fused
    stored parameters are listed under ``qkv`` / ``gate_up`` when ``include_fused`` is
    true or when ``roles`` names them. Unknown architecture: a :class:`UserError` listing
    the linear layers found and how to map them.
    """
    kind = model_type(model)
    table = _ARCHITECTURES.get(kind)
    if table is None:
        raise UserError(_unknown_message(kind, model))
    wanted = set(ROLES) if roles is None else set(roles)
    unknown = wanted - set(ROLES) - set(FUSED_ROLES)
    if unknown:
        raise UserError(f"unknown roles {sorted(unknown)}; choose from "
                        f"{', '.join(ROLES + FUSED_ROLES)}")
    if include_fused:
        wanted |= set(FUSED_ROLES)
    compiled = [(_compile(p), r) for p, r in table.items()]
    config = getattr(model, "config", None)
    views: list[MatrixView] = []
    for name, module in _linear_modules(model):
        for regex, role in compiled:
            match = regex.match(name)
            if match is None:
                continue
            layer, param = int(match.group("layer")), f"{name}.weight"
            if role in ROLES:
                if role in wanted:
                    views.append(MatrixView(name, param, layer, role))
                break
            stored, _ = FUSED_LAYOUTS[role]
            for part, rows in split_fused(role, _out_features(module), config).items():
                if part in wanted:
                    views.append(MatrixView(name, param, layer, part, rows))
            if stored in wanted:
                views.append(MatrixView(name, param, layer, stored))
            break
    if not views:
        raise UserError(f"architecture {kind!r}: no weight matrices match roles "
                        f"{sorted(wanted)}; " + _unknown_message(kind, model).split("; ", 1)[1])
    order = {r: i for i, r in enumerate(ROLES + FUSED_ROLES)}
    views.sort(key=lambda v: (v.layer, order[v.role]))
    return views
