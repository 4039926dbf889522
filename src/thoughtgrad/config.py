# SPDX-License-Identifier: MIT
"""Shared config helpers: device resolution, seeding and ``key=value`` overrides.

Each concern has its own typed dataclass next to the code that uses it (``GPTMiniConfig``
in ``models/gpt_mini.py``, ``TrainConfig`` in ``train/sft.py``, ...). Their defaults run on
a laptop CPU. ``None`` means unset; ``__post_init__`` validates with a one-line
:class:`~thoughtgrad.errors.UserError`.
"""

from __future__ import annotations

import dataclasses
import random
import types
import typing
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np
import torch

from thoughtgrad.errors import UserError

T = TypeVar("T")


def resolve_device(device: str = "auto") -> torch.device:
    """Resolve ``"auto"`` to CUDA when present, else CPU; validate explicit names."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available")
    return dev


def resolve_dtype(name: str) -> torch.dtype:
    """Map ``fp32|float32|bf16|bfloat16|fp16|float16|fp64`` to a torch dtype."""
    table = {
        "fp32": torch.float32, "float32": torch.float32,
        "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
        "fp16": torch.float16, "float16": torch.float16,
        "fp64": torch.float64, "float64": torch.float64,
    }
    if name not in table:
        raise UserError(f"unknown dtype {name!r}; choose one of {sorted(table)}")
    return table[name]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _coerce(value: str, annotation: Any, key: str) -> Any:
    """Convert an override string to the field's annotated type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value.lower() == "none" and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    try:
        if annotation is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if annotation in (int, float, str):
            return annotation(value)
        if origin is tuple or annotation is tuple:
            try:
                return tuple(int_items(value))
            except ValueError as e:
                raise UserError(f"override {key}={value!r}: {e}") from None
    except ValueError:
        raise UserError(f"override {key}={value!r}: expected {annotation}") from None
    return value


def int_items(text: str) -> list[int]:
    """``2,4,7`` or inclusive ranges ``2-6`` or a mix ``2-4,7``; ValueError (with the
    reason) for a reversed range such as ``6-2``, an empty list or anything else."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part[1:]:  # a range; a leading "-" alone is a sign
                lo, hi = (int(x) for x in part.split("-", 1))
            else:
                lo = hi = int(part)
        except ValueError:
            raise ValueError(f"{part!r} is not an integer or a range like 2-6") from None
        if lo > hi:
            raise ValueError(f"range {part!r} runs backwards (write {hi}-{lo})")
        out.extend(range(lo, hi + 1))
    if not out:
        raise ValueError("empty list")
    return out


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a copy of dataclass ``cfg`` with ``a.b=value`` overrides applied, type-checked.

    Nested dataclass fields are addressed with dots (``train.lr=3e-4``).
    """
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        cfg = _set(cfg, key.strip().split("."), value.strip(), key)
    return cfg


def _set(cfg: Any, path: list[str], value: str, key: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    name = path[0]
    if name not in fields:
        raise UserError(f"override {key!r}: no field {name!r}; known: {sorted(fields)}")
    hints = typing.get_type_hints(type(cfg))
    current = getattr(cfg, name)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise UserError(f"override {key!r}: {name!r} has no sub-fields")
        return dataclasses.replace(cfg, **{name: _set(current, path[1:], value, key)})
    return dataclasses.replace(cfg, **{name: _coerce(value, hints[name], key)})


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a (nested) dataclass config."""
    return dataclasses.asdict(cfg)


def identity_of(cfg: Any, *, drop: Iterable[str] = ()) -> dict[str, Any]:
    """A config dataclass as the nested dict a run directory records as its identity
    (:meth:`~thoughtgrad.runs.store.RunDir.create`), without the dotted keys in ``drop``:
    settings that change no number (``"device"``, ``"train.checkpoint_every"``) or that
    vary between the cells of one run directory (``"regime"``). Absent keys are ignored."""
    d = dataclasses.asdict(cfg)
    for key in drop:
        *parents, last = key.split(".")
        node: Any = d
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return d
