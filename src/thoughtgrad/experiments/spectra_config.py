# SPDX-License-Identifier: MIT
"""The settings of a ``thoughtgrad spectra`` run (saved in the manifest) and the part of them
a resumed run must share with the run it continues."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtgrad.config import identity_of
from thoughtgrad.errors import UserError
from thoughtgrad.models.placement import parse_device_map
from thoughtgrad.tasks.encode import LOSS_SPANS

RESUME_FREE: tuple[str, ...] = ("limit", "device", "device_map", "batch_tokens",
                                 "attn_implementation", "recompute_layers")
"""Config fields that may change between a run and its resumption: they select samples
or place work but do not change any number already written."""

INITS = ("pretrained", "random")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
METHODS = ("fast", "reference")
LOSS_REDUCTIONS = ("mean", "sum")


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
    """a local model directory (config + safetensors), a .gguf file, a packaged model
    (pkg:smollm2-135m-instruct, pkg:gemma-3-270m; see `thoughtgrad models`) or a hub id"""
    data: tuple[str, ...]
    """Alpaca-style .json array or .jsonl (instruction, input, output), or any
    .json/.jsonl/.parquet with --prompt-field/--response-field; repeatable"""
    roles: tuple[str, ...] | None = None
    """comma-separated roles among q,k,v,o,gate,up,down and the fused stored weights
    qkv,gate_up (default: q,k,v,o,gate,up,down)"""
    batch_tokens: int = 4096
    """memory bound: padded tokens per batch (samples x longest)"""
    max_length: int | None = None
    """token bound per sample; longer responses are truncated from the end and counted in
    the manifest (default: the model's maximum)"""
    dtype: str = "fp32"
    """model weights: fp32, bf16, fp16, fp64"""
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ..."""
    device_map: str | None = None
    """spread a model too large for one device over the GPUs (then the CPU) with
    accelerate: auto, balanced, sequential, or a JSON object / .json file of module path ->
    device; replaces --device; the numbers are those of one device"""
    method: str = "fast"
    """fast: one batched backward, exact spectra from small QR cores; reference: the
    paper's per-sample backward + full SVD (slow)"""
    limit: int | None = None
    """only the first N records of each data file (raise it later to extend the same run)"""
    chat_template: bool = False
    """encode with the tokenizer's chat template (system + user turn, generation prompt)
    as for instruct models; default: prompt + newline + response as for base models"""
    system_prompt: str | None = None
    """system turn with --chat-template (default: 'You are a helpful assistant.')"""
    trust_remote_code: bool = False
    """allow a hub model's own Python code to run (off by default)"""
    condition: tuple[str, ...] | None = None
    """condition label instead of the one inferred from file names: once for all files or
    once per --data, in order"""
    prompt_field: str | None = None
    """field holding the prompt (default: instruction + input)"""
    response_field: str | None = None
    """field holding the response (default: output)"""
    loss_reduction: str = "mean"
    """per-sample loss: mean over loss tokens (the paper's) or sum"""
    loss_span: str = "response"
    """tokens carrying loss: the whole response, or only the final answer"""
    answer_pattern: str | None = None
    """regex locating the answer for --loss-span answer (group 1, last match), instead of
    the default answer finder described above"""
    init: str = "pretrained"
    """random: re-initialise the same architecture (seeded), the untrained-model control"""
    seed: int = 0
    """seed for --init random"""
    include_fused: bool = False
    """also report fused stored weights (qkv, gate_up) whole"""
    attn_implementation: str = "eager"
    """attention kernel: eager (exact in any dtype) or sdpa (faster; same numbers up to
    rounding, so a run may resume with the other)"""
    recompute_layers: bool = False
    """recompute each layer block's forward inside the backward (activation
    checkpointing): peak memory falls to the blocks' inputs plus one block, for one more
    forward pass of time; the same numbers"""

    def __post_init__(self) -> None:
        if not self.data:
            raise UserError("no data files: give at least one --data FILE")
        if self.init not in INITS:
            raise UserError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise UserError(f"loss_reduction must be mean or sum, got {self.loss_reduction!r}")
        if self.loss_span not in LOSS_SPANS:
            raise UserError(f"loss_span must be one of {', '.join(LOSS_SPANS)}, "
                            f"got {self.loss_span!r}")
        if self.method not in METHODS:
            raise UserError(f"method must be fast or reference, got {self.method!r}")
        if self.batch_tokens < 1:
            raise UserError(f"batch_tokens must be >= 1, got {self.batch_tokens}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit must be >= 1, got {self.limit}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise UserError(f"attn_implementation must be one of "
                            f"{', '.join(ATTN_IMPLEMENTATIONS)}, got {self.attn_implementation!r}")
        parse_device_map(self.device_map)  # a bad map fails before any work

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

