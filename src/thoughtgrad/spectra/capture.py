# SPDX-License-Identifier: MIT
"""Hooks that capture each linear layer's inputs ``X`` and output-gradients ``D``.

:func:`capturing` is a context manager: on entry it freezes every parameter
(``requires_grad=False``), puts the model in eval mode (dropout off), makes the input
embeddings' output carry grad (so every activation does, while no weight gradient is ever
computed) and installs a forward hook on each selected module; each forward call stores
the module's input and registers a tensor hook on its output that stores the gradient
arriving there. On exit, always (also after an exception), it removes every hook and
restores ``requires_grad`` and the train/eval flags exactly as they were.

With a ``consumer``, a module's factors are handed over as soon as the gradient of its last
forward call arrives, and dropped from the capture: the backward then never holds more
than one module's ``D`` and only the ``X`` of modules it has not reached yet.

Devices follow the modules. A model placed by a device map runs each block on its own
device; a module's ``X`` is kept on the device its output was computed on (where its ``D``
arrives), moved there when a hook outside the module (accelerate's) delivered the input
elsewhere, so a consumer computes each module's statistics on that module's device.

With ``recompute_layers`` (activation checkpointing), each block of the model's layer list
(``model.layers.3``, ``blocks.0``) runs under :func:`torch.utils.checkpoint.checkpoint`:
the forward keeps only every block's input, and the backward recomputes one block's
forward just before it needs it. The hooks then record only the shape of ``X`` in the
forward and take ``X`` from the recomputation; a module's ``D`` that arrives before its
block is recomputed (the block's last layer) waits for it. Peak memory is then the blocks'
inputs plus one block, for one more forward pass of time; the numbers do not change.

Per-layer-type knowledge sits in one registry: ``@register_capture(nn.Linear)``,
``@register_capture(Conv1D)``. A rule has the signature
``(module, inputs, grad_output) -> dict[str, Factors]`` keyed by parameter name, where
``Factors`` orients the pair so that the parameter's gradient is ``D^T X`` (up to
transposition, which leaves singular values unchanged) and ``D``'s last dim indexes the
layer's output features (the rows :mod:`thoughtgrad.models.roles` slices fused weights by).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn as nn
from jaxtyping import Bool, Float, Int
from torch import Tensor

from thoughtgrad.errors import UserError
from thoughtgrad.models.frozen import frozen


class Factors(NamedTuple):
    """``X`` (B T n) layer inputs and ``D`` (B T m) output-gradients; gradient = D^T X."""

    x: Tensor
    d: Tensor


Rule = Callable[[nn.Module, Tensor, Tensor], dict[str, Factors]]


@dataclass(frozen=True)
class CaptureRule:
    """A registered rule and the axis of the stored weight that indexes output features."""

    factors: Rule
    out_axis: int


_RULES: dict[type, CaptureRule] = {}


def register_capture(module_type: type, *, out_axis: int = 0) -> Callable[[Rule], Rule]:
    """Register the factor rule of ``module_type`` (``out_axis``: output axis of its weight)."""

    def deco(rule: Rule) -> Rule:
        _RULES[module_type] = CaptureRule(rule, out_axis)
        return rule

    return deco


def rule_for(module: nn.Module) -> CaptureRule:
    """The rule of ``module``'s type (or a registered base class); UserError when none."""
    for cls in type(module).__mro__:
        if cls in _RULES:
            return _RULES[cls]
    raise UserError(f"no spectra capture rule for layer type {type(module).__name__}; "
                    "register one with thoughtgrad.spectra.capture.register_capture")


@register_capture(nn.Linear)
def _linear(module: nn.Module, inputs: Float[Tensor, "B T n"],
            grad_output: Float[Tensor, "B T m"]) -> dict[str, Factors]:
    """y = x W^T + b: the weight (m x n) gradient is D^T X."""
    return {"weight": Factors(inputs, grad_output)}


def _register_conv1d() -> None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return

    @register_capture(Conv1D, out_axis=1)
    def _conv1d(module: nn.Module, inputs: Float[Tensor, "B T n"],
                grad_output: Float[Tensor, "B T m"]) -> dict[str, Factors]:
        """y = x W + b with W stored n x m: the weight gradient is X^T D = (D^T X)^T."""
        return {"weight": Factors(inputs, grad_output)}


_register_conv1d()


Consumer = Callable[[str, Factors, list[Tensor]], None]
"""Called as ``consumer(name, factors, inputs)``: a module's complete factors and its
captured per-call inputs (their storage identifies an input several modules share)."""


@dataclass
class Capture:
    """What the hooks recorded, per module path, one entry per forward call.

    ``hooked`` counts the calls whose output carries grad (a gradient hook is waiting).
    """

    inputs: dict[str, list[Tensor]] = field(default_factory=dict)
    grads: dict[str, dict[int, Tensor]] = field(default_factory=dict)
    hooked: dict[str, int] = field(default_factory=dict)
    modules: dict[str, nn.Module] = field(default_factory=dict)
    consumer: Consumer | None = None
    recomputed: frozenset[str] = frozenset()
    """Modules inside a recomputed block: their ``X`` comes from the recomputation."""
    on_recomputed: Callable[[dict[str, list[Tensor]]], None] | None = None
    """Called with a block's freshly recomputed inputs before any of them is handed over
    (the consumer counts which modules share an input)."""
    recomputing: bool = False
    fresh: list[str] = field(default_factory=list)

    def complete(self, name: str) -> bool:
        """Whether the module can be handed over: a consumer waits, the gradient of every
        forward call whose output carried grad has arrived, and every call has its real
        ``X`` (not only its shape)."""
        return (self.consumer is not None
                and len(self.grads.get(name, {})) == self.hooked.get(name, 0) > 0
                and all(not x.is_meta for x in self.inputs.get(name, ())))

    def hand_over(self, name: str) -> None:
        """Give the module's factors to the consumer, then forget its inputs and gradients."""
        factors = self.factors(name, self.modules[name])
        inputs = self.inputs.pop(name)
        self.grads.pop(name, None)
        self.hooked.pop(name, None)
        self.consumer(name, factors, inputs)

    def block_recomputed(self) -> None:
        """After a block's recomputation: announce its inputs, then hand over the modules
        whose gradients all arrived already."""
        fresh = {name: self.inputs[name] for name in self.fresh if name in self.inputs}
        self.fresh.clear()
        if self.on_recomputed is not None:
            self.on_recomputed(fresh)
        for name in fresh:
            if self.complete(name):
                self.hand_over(name)

    def flush(self) -> None:
        """Hand every module still captured to the consumer (modules some of whose calls
        got no gradient: their ``D`` is zero there; a block never recomputed got no
        gradient at all, its ``X`` is taken as zeros of the recorded shape)."""
        if self.consumer is None:
            return
        for name in list(self.inputs):
            device = self.modules[name].weight.device
            self.inputs[name] = [torch.zeros(x.shape, dtype=x.dtype, device=device)
                                 if x.is_meta else x for x in self.inputs[name]]
            self.hand_over(name)

    def factors(self, name: str, module: nn.Module) -> Factors:
        """The module's factors over all its forward calls (concatenated along tokens).

        A module applied several times in one forward (shared weights, looped depth) has
        gradient sum_c D_c^T X_c = [D_1; D_2; ...]^T [X_1; X_2; ...].
        """
        xs = self.inputs.get(name, [])
        gs = self.grads.get(name, {})
        if not xs:
            raise UserError(f"module {name} was not called in the forward pass")
        ds = [gs.get(c) for c in range(len(xs))]
        m = module.weight.shape[rule_for(module).out_axis]
        ds = [torch.zeros(x.shape[:-1] + (m,), dtype=x.dtype, device=x.device)
              if d is None else d for x, d in zip(xs, ds, strict=True)]
        x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=-2)  # B T' n
        d = ds[0] if len(ds) == 1 else torch.cat(ds, dim=-2)  # B T' m
        return rule_for(module).factors(module, x, d)["weight"]


def input_embeddings(model: nn.Module) -> nn.Module:
    """The token-embedding module of a Hugging Face model or gpt_mini."""
    getter = getattr(model, "get_input_embeddings", None)
    if callable(getter):
        emb = getter()
        if emb is not None:
            return emb
    emb = getattr(model, "tok_emb", None)
    if isinstance(emb, nn.Module):
        return emb
    raise UserError(f"model {type(model).__name__}: cannot find its input embeddings")


def layer_blocks(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """The blocks holding the modules ``names``: for each, its outermost ancestor that is
    an element of an ``nn.ModuleList`` (``model.layers.3``); modules in no list have none."""
    blocks: dict[str, nn.Module] = {}
    for name in names:
        parts = name.split(".")
        for i in range(2, len(parts)):  # parts[:i] is a block when parts[:i - 1] is a list
            if isinstance(model.get_submodule(".".join(parts[:i - 1])), nn.ModuleList):
                path = ".".join(parts[:i])
                blocks[path] = model.get_submodule(path)
                break
    return blocks


def _checkpointed_forward(block: nn.Module, cap: Capture) -> Callable:
    """``block``'s forward run under non-reentrant activation checkpointing; the second
    run of the function (the recomputation, inside the backward) fills ``cap``'s inputs."""
    from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

    inner = block.forward

    def forward(*args: object, **kwargs: object) -> object:
        if not torch.is_grad_enabled():
            return inner(*args, **kwargs)
        runs = [0]

        def run(*a: object, **k: object) -> object:
            runs[0] += 1
            if runs[0] == 1:
                return inner(*a, **k)
            cap.recomputing = True
            try:
                return inner(*a, **k)
            finally:
                cap.recomputing = False
                cap.block_recomputed()

        # every module's hook must fire in the recomputation, not only up to the last
        # tensor the backward needs
        with set_checkpoint_early_stop(False):
            return checkpoint(run, *args, use_reentrant=False, **kwargs)

    return forward


@contextlib.contextmanager
def capturing(model: nn.Module, modules: Mapping[str, nn.Module], *,
              consumer: Consumer | None = None, recompute_layers: bool = False,
              on_recomputed: Callable[[dict[str, list[Tensor]]], None] | None = None
              ) -> Iterator[Capture]:
    """Freeze ``model``, make activations carry grad, capture X and D of ``modules``.

    Yields a :class:`Capture` filled by the forward and backward passes run inside the
    block; with ``consumer``, each module's :class:`Factors` go to ``consumer(name,
    factors)`` (inside the backward) as soon as they are complete, and are not kept; call
    :meth:`Capture.flush` after the backward for modules left incomplete. Hooks are removed
    and parameter/mode flags restored on exit, always. ``recompute_layers`` (needs a
    consumer): activation checkpointing of the model's layer blocks, see the module
    docstring; ``on_recomputed`` is then :attr:`Capture.on_recomputed`.
    """
    for name, module in modules.items():
        rule_for(module)  # fail before touching the model
        if not name:
            raise UserError("cannot capture the root module")
    blocks = layer_blocks(model, modules) if recompute_layers else {}
    if recompute_layers and consumer is None:
        raise ValueError("recompute_layers needs a consumer")
    inside = frozenset(n for n in modules if any(n.startswith(b + ".") for b in blocks))
    cap = Capture(modules=dict(modules), consumer=consumer, recomputed=inside,
                  on_recomputed=on_recomputed)
    handles: list[torch.utils.hooks.RemovableHandle] = []
    patched: list[tuple[nn.Module, object]] = []  # block, its own forward attribute if any
    try:
        for block in blocks.values():
            patched.append((block, block.__dict__.get("forward")))
            block.forward = _checkpointed_forward(block, cap)
        with frozen(model):
            def embed_hook(_mod: nn.Module, _inp: tuple, out: Tensor) -> Tensor:
                return out.detach().requires_grad_(True)

            handles.append(input_embeddings(model).register_forward_hook(embed_hook))
            for name, module in modules.items():
                handles.append(module.register_forward_hook(_make_forward_hook(name, cap, handles)))
            yield cap
    finally:
        for h in handles:
            h.remove()
        for block, own in patched:  # the forward it had (an accelerate hook's, or none)
            if own is None:
                del block.forward
            else:
                block.forward = own


def _make_forward_hook(name: str, cap: Capture, handles: list) -> Callable:
    recomputed = name in cap.recomputed

    def hook(_mod: nn.Module, inputs: tuple, out: Tensor) -> None:
        x = inputs[0].detach().to(out.device)  # X where the module ran (D's device)
        calls = cap.inputs.setdefault(name, [])
        if recomputed and cap.recomputing:  # the real X, inside the backward
            calls[0] = x
            cap.fresh.append(name)
            return
        call = len(calls)
        if recomputed:
            if call:
                raise UserError(f"module {name} runs more than once per forward: measure "
                                "it without layer recomputation")
            x = torch.empty(x.shape, dtype=x.dtype, device="meta")  # its shape only
        calls.append(x)
        if not out.requires_grad:
            return
        cap.hooked[name] = cap.hooked.get(name, 0) + 1

        def grad_hook(grad: Tensor) -> None:
            got = cap.grads.setdefault(name, {})
            got[call] = grad.detach()
            if cap.complete(name):
                cap.hand_over(name)

        handles.append(out.register_hook(grad_hook))

    return hook


def forward_logits(model: nn.Module, input_ids: Int[Tensor, "B T"],
                   attention_mask: Int[Tensor, "B T"], *, keep: Bool[Tensor, "B T"] | None = None
                   ) -> Tensor:
    """Logits of a Hugging Face causal LM or gpt_mini, without a KV cache.

    All positions (B T V) by default; with ``keep``, only the kept positions, flattened in
    row-major order (N V). Hugging Face models then apply the LM head to the kept positions
    only (``logits_to_keep`` boolean mask), which skips the vocabulary projection on prompt
    tokens; a model spread over several devices gets all positions and the kept ones are
    taken afterwards (its last hidden states need not be on the mask's device). Logits are
    on the device the model returns them on: with a device map, that of ``input_ids``.
    """
    from thoughtgrad.models.placement import spans_devices

    kw = {} if keep is None or spans_devices(model) else {"logits_to_keep": keep}
    try:
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kw)
    except TypeError:  # a model without logits_to_keep (gpt_mini)
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    logits = out.logits if hasattr(out, "logits") else out[0]
    if keep is not None and logits.dim() == 3:
        logits = logits[keep.to(logits.device)]  # N V
    return logits
