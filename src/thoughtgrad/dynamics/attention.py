# SPDX-License-Identifier: MIT
"""Attention that supports double backward, for the duration of a Hessian-vector product.

PyTorch's flash and memory-efficient SDPA kernels, and Hugging Face attention
implementations such as flash-attention, have no double backward; an HVP through them
fails. :func:`math_attention` forces the math SDPA kernel, and :func:`hvp_attention` also
switches such a Hugging Face model to ``eager`` attention and back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from torch import nn

log = logging.getLogger(__name__)


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Force PyTorch's math SDPA kernel: flash/memory-efficient kernels lack double backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


DOUBLE_BACKWARD_ATTENTION = ("eager", "sdpa")
"""Hugging Face attention implementations with a double backward (``sdpa`` only under
:func:`math_attention`); any other (flash-attention, flex, hub kernels) is switched to
``eager`` while a Hessian-vector product runs."""


def _set_attention(model: nn.Module, name: str) -> None:
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        try:
            setter(name)
            return
        except (ValueError, ImportError, RuntimeError) as exc:
            log.warning("set_attn_implementation(%r) failed (%s); setting the config", name,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    model.config._attn_implementation = name


@contextlib.contextmanager
def hvp_attention(model: nn.Module) -> Iterator[None]:
    """Attention that supports double backward, for the duration of an HVP.

    PyTorch's math SDPA kernel is forced (:func:`math_attention`), and a Hugging Face model
    whose ``config._attn_implementation`` is not in :data:`DOUBLE_BACKWARD_ATTENTION`
    (e.g. ``flash_attention_2``) is switched to ``eager`` through
    ``model.set_attn_implementation`` (or the config attribute on versions without it);
    the previous implementation is restored on exit, also after an error. gpt_mini has no
    such setting and only gets the math kernel.
    """
    before = getattr(getattr(model, "config", None), "_attn_implementation", None)
    switch = isinstance(before, str) and before not in DOUBLE_BACKWARD_ATTENTION
    if switch:
        _set_attention(model, "eager")
    try:
        with math_attention():
            yield
    finally:
        if switch:
            _set_attention(model, before)
