# SPDX-License-Identifier: MIT
"""The SFT loop's checkpoint: model, optimizer, step, losses, RNG state and the callbacks'
own state in one directory, written so that a kill at any moment leaves the previous
checkpoint readable (:func:`save_state`), and read back to resume (:func:`load_state`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from thoughtgrad.errors import UserError

STATE_FILE = "trainer_state.pt"


def save_state(directory: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int,
               losses: list[float], save_model: Callable[[nn.Module, Path], None] | None,
               seconds: float, callbacks: Sequence[Any] = ()) -> None:
    """Model, optimizer, step, losses, RNG and each callback's ``state_dict()`` (those
    that have one: a probe's previous gradient), written so a kill leaves the old state."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{STATE_FILE}.tmp"
    kept = [cb.state_dict() if hasattr(cb, "state_dict") else None for cb in callbacks]
    torch.save({"step": step, "optimizer": opt.state_dict(),
                "model": None if save_model else model.state_dict(),
                "losses": losses, "rng": torch.get_rng_state(), "seconds": seconds,
                "callbacks": kept}, tmp)
    if save_model is not None:
        save_model(model, directory)
    tmp.replace(directory / STATE_FILE)
    (directory / "trainer_state.json").write_text(json.dumps({"step": step}) + "\n")


def load_state(directory: Path, model: nn.Module, opt: torch.optim.Optimizer,
               load_model: Callable[[nn.Module, Path], None] | None
               ) -> tuple[int, list[float], float, list[Any]]:
    """Restore ``model`` (through ``load_model`` when given), ``opt`` and the RNG state
    from ``directory``; return the step, the losses so far, the training seconds before
    and the callbacks' states (in callback order). A file that cannot be read is a
    :class:`UserError`."""
    path = directory / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a corrupt checkpoint
        raise UserError(f"checkpoint {path}: cannot be read ({exc})") from None
    if load_model is not None:
        load_model(model, directory)
    else:
        model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    return (int(state["step"]), list(state["losses"]), float(state.get("seconds", 0.0)),
            list(state.get("callbacks") or []))
