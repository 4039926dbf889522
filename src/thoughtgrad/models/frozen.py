# SPDX-License-Identifier: MIT
"""A model frozen for a measurement, then given back exactly as it was."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def frozen(model: nn.Module, *, trainable: Iterable[nn.Parameter] = ()) -> Iterator[nn.Module]:
    """Inside the block every parameter of ``model`` but ``trainable`` has
    ``requires_grad=False`` and every module is in eval mode (no dropout). On exit, always,
    each parameter's ``requires_grad`` and each module's train/eval flag are restored to
    what they were (per module, so a mixed-mode model stays mixed).

    Flags are restored by parameter name, not by object: accelerate's offloading hooks
    (a device map with ``cpu`` / ``disk`` blocks) replace a block's parameter objects at
    every call, copying the flag of the object they replace."""
    flags = {n: p.requires_grad for n, p in model.named_parameters(remove_duplicate=False)}
    modes = [(m, m.training) for m in model.modules()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in trainable:
            p.requires_grad_(True)
        model.eval()
        yield model
    finally:
        for n, p in model.named_parameters(remove_duplicate=False):
            p.requires_grad_(flags.get(n, p.requires_grad))
        for m, mode in modes:
            m.training = mode
