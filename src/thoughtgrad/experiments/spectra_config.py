# SPDX-License-Identifier: MIT
"""The settings of a ``thoughtgrad spectra`` run (saved in the manifest) and the part of them
a resumed run must share with the run it continues."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtgrad.config import identity_of
from thoughtgrad.errors import UserError
from thoughtgrad.tasks.encode import LOSS_SPANS

RESUME_FREE: tuple[str, ...] = ("limit", "device", "batch_tokens", "attn_implementation")
"""Config fields that may change between a run and its resumption: they select samples
or place work but do not change any number already written."""

INITS = ("pretrained", "random")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


@dataclass(frozen=True)
class SpectraConfig:
    """Everything that defines a ``thoughtgrad spectra`` run (saved in the manifest).

    ``max_length`` ``None`` means the model's maximum positions. ``condition`` is one label
    for every file or one per file. ``init="random"`` re-initialises the same architecture
    with ``seed`` (the untrained-model control). ``attn_implementation`` is how the model
    computes attention (``eager`` exact in any dtype, or ``sdpa``); it changes no number
    beyond rounding, so a run may be resumed with the other one.
    """

    model: str
    data: tuple[str, ...]
    roles: tuple[str, ...] | None = None
    batch_tokens: int = 4096
    max_length: int | None = None
    dtype: str = "fp32"
    device: str = "auto"
    method: str = "fast"
    limit: int | None = None
    chat_template: bool = False
    system_prompt: str | None = None
    trust_remote_code: bool = False
    condition: tuple[str, ...] | None = None
    prompt_field: str | None = None
    response_field: str | None = None
    loss_reduction: str = "mean"
    loss_span: str = "response"
    answer_pattern: str | None = None
    init: str = "pretrained"
    seed: int = 0
    include_fused: bool = False
    attn_implementation: str = "eager"

    def __post_init__(self) -> None:
        if not self.data:
            raise UserError("no data files: give at least one --data FILE")
        if self.init not in INITS:
            raise UserError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.loss_reduction not in ("mean", "sum"):
            raise UserError(f"loss_reduction must be mean or sum, got {self.loss_reduction!r}")
        if self.loss_span not in LOSS_SPANS:
            raise UserError(f"loss_span must be one of {', '.join(LOSS_SPANS)}, "
                            f"got {self.loss_span!r}")
        if self.method not in ("fast", "reference"):
            raise UserError(f"method must be fast or reference, got {self.method!r}")
        if self.batch_tokens < 1:
            raise UserError(f"batch_tokens must be >= 1, got {self.batch_tokens}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit must be >= 1, got {self.limit}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise UserError(f"attn_implementation must be one of "
                            f"{', '.join(ATTN_IMPLEMENTATIONS)}, got {self.attn_implementation!r}")

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        d = identity_of(self, drop=RESUME_FREE)
        d["data"] = [str(Path(p).resolve()) for p in self.data]
        d["model"] = self.model_id()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def model_id(self) -> str:
        """The model as rows and manifests name it: the resolved local directory
        (``./m`` and ``m`` are one model), else the hub id as given."""
        local = Path(self.model).expanduser()
        return str(local.resolve()) if local.is_dir() else self.model

