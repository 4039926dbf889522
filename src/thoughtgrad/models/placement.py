# SPDX-License-Identifier: MIT
"""Where a loaded model's weights live: one device, or a device map (accelerate).

``--device-map`` hands ``from_pretrained(..., device_map=...)`` a placement strategy
(``auto``, ``balanced``, ``balanced_low_0``, ``sequential``: accelerate fills the visible
GPUs, then the CPU, then the disk) or an explicit ``{module path: device}`` map, written as
inline JSON or as the path of a ``.json`` file. A model placed on several devices is
*dispatched*: accelerate's hooks move each block's inputs to its device, and the root
module's output back to the device of the inputs. A map whose devices include ``cpu`` or
``disk`` beside a GPU *offloads* those blocks: their weights sit on the ``meta`` device
between forward calls and are loaded only while the block runs.

The helpers here read a loaded model; none moves anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from thoughtgrad.errors import UserError

STRATEGIES: tuple[str, ...] = ("auto", "balanced", "balanced_low_0", "sequential")
"""accelerate's placement strategies (``infer_auto_device_map``)."""

DeviceMap = str | dict[str, str | int]


def parse_device_map(text: str | None) -> DeviceMap | None:
    """The ``device_map`` argument of ``from_pretrained`` for a ``--device-map`` value.

    ``None`` stays ``None`` (the whole model on ``--device``); a strategy name is kept; text
    starting with ``{`` (or ``[``) is inline JSON and any other text the path of a JSON
    file, holding an object mapping module paths (``model.layers.3``) to devices
    (``cuda:1``, ``0``, ``cpu``, ``disk``). Anything else is a one-line :class:`UserError`.
    """
    if text is None or text in STRATEGIES:
        return text
    source = "--device-map"
    raw = text
    if not text.lstrip().startswith(("{", "[")):  # inline JSON, else a file
        path = Path(text).expanduser()
        if not path.is_file():
            raise UserError(f"--device-map {text}: not one of {', '.join(STRATEGIES)}, a JSON "
                            "object or a .json file")
        source, raw = str(path), path.read_text()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(value, dict) or not value or not all(
            isinstance(k, str) and isinstance(v, str | int) and not isinstance(v, bool)
            for k, v in value.items()):
        raise UserError(f"{source}: a device map is a non-empty JSON object of module path -> "
                        'device, e.g. {"model.embed_tokens": 0, "model.layers.0": 0, ...}')
    return value


def weight_devices(model: nn.Module) -> set[torch.device]:
    """The devices holding ``model``'s parameters and buffers now (offloaded weights, on the
    ``meta`` device between calls, are left out)."""
    tensors = [*model.parameters(), *model.buffers()]
    return {t.device for t in tensors if t.device.type != "meta"}


def spans_devices(model: nn.Module) -> bool:
    """Whether the forward pass runs on more than one device (activations move between
    them), as with a device map over several GPUs."""
    return len(weight_devices(model)) > 1


def offloaded(model: nn.Module) -> bool:
    """Whether some weights are offloaded (on ``meta`` between calls, loaded per call): such
    parameters exist only inside each forward, so nothing can differentiate with respect to
    them."""
    return any(p.device.type == "meta" for p in model.parameters())


def input_device(model: nn.Module) -> torch.device:
    """Where the input ids go: the device of the token embeddings (a dispatched model's hooks
    move them from there); for offloaded embeddings the device the root module runs on."""
    getter = getattr(model, "get_input_embeddings", None)
    emb = getter() if callable(getter) else None
    weight = getattr(emb, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.device.type != "meta":
        return weight.device
    hook = getattr(model, "_hf_hook", None)
    execution = getattr(hook, "execution_device", None)
    if execution is not None:
        return torch.device(execution)
    devices = sorted(weight_devices(model), key=str)
    return devices[0] if devices else torch.device("cpu")
