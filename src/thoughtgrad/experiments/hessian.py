# SPDX-License-Identifier: MIT
"""The Hessian study behind ``thoughtgrad hessian``: top eigenvalues and the Hutchinson
trace of the mean response-token cross-entropy at a model's weights, for all parameters
and, optionally, for each block alone (the Hessian's diagonal blocks).

With ``batch_size`` the samples are split into batches and every Hessian-vector product is
the token-weighted average of the batches' products (PyHessian's full-dataset mode, equal
to the product of one batch holding every sample); under ``torchrun`` the batches are
shared among the ranks (batch j on rank j mod N) and the products all-reduced
(:mod:`thoughtgrad.dynamics.dataset_hvp`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from thoughtgrad import distributed
from thoughtgrad.distributed import World
from thoughtgrad.errors import UserError
from thoughtgrad.experiments.dynamics import check_regime
from thoughtgrad.models.placement import input_device, offloaded, parse_device_map
from thoughtgrad.tasks.encode import LOSS_SPANS

HESSIAN_METHODS = ("lanczos", "power")


@dataclass(frozen=True)
class HessianConfig:
    """One Hessian measurement (saved in the run's manifest)."""

    model: str
    """gpt_mini checkpoint or Hugging Face model directory / id"""
    data: str = "toy:addition"
    """toy:<task> or an Alpaca-style JSON/JSONL file"""
    regime: str = "cot"
    """response variant (cot = the data's responses unchanged)"""
    loss_span: str = "response"
    """which response tokens carry the loss"""
    top_k: int = 1
    """eigenvalues to find (largest algebraic)"""
    method: str = "lanczos"
    """lanczos (full reorthogonalisation) or power (iteration with deflation)"""
    tol: float = 1e-4
    """relative change of the estimates that stops the iteration (> 0)"""
    max_iter: int = 100
    """HVP cap per eigen-solve"""
    trace_samples: int = 20
    """Rademacher vectors for the Hutchinson trace (0 = skip)"""
    per_layer: bool = False
    """also each block on its own (layer -1 = embeddings, final norm and LM head)"""
    limit: int = 8
    """only the first N records of the data file: the samples in the loss"""
    max_length: int = 512
    """token bound per sample"""
    chat_template: bool = False
    """wrap prompts in the tokenizer's chat template (instruct models)"""
    seed: int = 0
    """seed of the dropped steps, the start vectors and the Rademacher vectors"""
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ..."""
    device_map: str | None = None
    """spread a model too large for one GPU over several with accelerate: auto, balanced,
    sequential, or a JSON object / .json file of module path -> device, every block on a
    GPU (the Hessian differentiates the weights, so none may be offloaded); replaces
    --device"""
    batch_size: int | None = None
    """samples per batch of the Hessian-vector products (default: all in one batch; the
    Hessian is of the mean over every loss token either way); under torchrun the batches
    are shared among the ranks"""

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {self.batch_size}")
        check_regime(self.regime)
        parse_device_map(self.device_map)
        if self.loss_span not in LOSS_SPANS:
            raise UserError(f"loss_span must be one of {', '.join(LOSS_SPANS)}")
        if self.method not in HESSIAN_METHODS:
            raise UserError(f"method must be one of {', '.join(HESSIAN_METHODS)}")
        if self.method == "lanczos" and self.top_k > self.max_iter:
            raise UserError(f"--top-k {self.top_k} needs at least that many Lanczos steps; "
                            f"--max-iter is {self.max_iter}")


@dataclass
class HessianResult:
    """All parameters' estimates (``whole``), each block's (``layers``), samples used."""

    whole: dict[str, Any]
    layers: list[dict[str, Any]]
    samples: int

    def table(self) -> pd.DataFrame:
        """The ``hessian`` table: one row per parameter set (``all`` or a layer index),
        lambda_1..k, trace (NaN when skipped), trace_stderr, hvps, converged."""
        rows = [{"layer": "all", **self.whole}, *self.layers]
        return pd.DataFrame([{
            "layer": str(r["layer"]),
            **{f"lambda_{i + 1}": v for i, v in enumerate(r["eigenvalues"])},
            "trace": r["trace"], "trace_stderr": r.get("trace_stderr", math.nan),
            "hvps": r["hvps"], "converged": r["converged"]} for r in rows])

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object (strict JSON: a value that did not converge to a number is
        ``null``, never NaN): eigenvalues, trace (null when skipped), hvps in total,
        converged (every solve met its stopping rule), and per layer the same when
        measured."""
        def num(x: float) -> float | None:
            return None if not math.isfinite(x) else x

        def one(r: dict[str, Any]) -> dict[str, Any]:
            return {"eigenvalues": [num(v) for v in r["eigenvalues"]], "trace": num(r["trace"]),
                    "hvps": r["hvps"], "converged": bool(r["converged"])}

        obj: dict[str, Any] = {
            **one(self.whole),
            "hvps": self.whole["hvps"] + sum(r["hvps"] for r in self.layers),
            "converged": bool(self.whole["converged"]) and all(r["converged"]
                                                               for r in self.layers)}
        if self.layers:
            obj["layers"] = [{"layer": r["layer"], **one(r)} for r in self.layers]
        return obj


def measure_hessian(cfg: HessianConfig, *, world: World = distributed.SINGLE) -> HessianResult:
    """Load the model and data, then solve for all parameters and, with ``per_layer``,
    for each block's parameters alone (model in eval mode, attention double-backward-safe).
    Every rank of ``world`` returns the same result."""
    from thoughtgrad.dynamics.attention import hvp_attention
    from thoughtgrad.dynamics.dataset_hvp import dataset_hvp_operator
    from thoughtgrad.dynamics.hessian import eigenvalues_of, hvp_operator, trace_of
    from thoughtgrad.dynamics.probes import default_loss, eval_mode, layer_index
    from thoughtgrad.experiments.dynamics_data import load_examples, probe_batches
    from thoughtgrad.models.hf import load_model

    if world.distributed and cfg.device_map is not None:
        raise UserError("--device-map under a launcher: every rank would spread its copy of "
                        "the model over every GPU; use one or the other")
    model = load_model(cfg.model, device=distributed.device_for(world, cfg.device),
                       device_map=cfg.device_map)
    if offloaded(model):
        raise UserError("--device-map: this map offloads weights (cpu / disk beside a GPU), "
                        "and the Hessian differentiates the weights themselves; give a map "
                        "of GPUs only")
    device = input_device(model)  # a device map's first block; logits come back there
    examples, pad_id, _ = load_examples(model, cfg.model, cfg.data, cfg.regime, seed=cfg.seed,
                                        limit=cfg.limit, max_length=cfg.max_length,
                                        chat_template=cfg.chat_template)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def batch_of(chosen: list) -> Any:
        full, answer = probe_batches(chosen, len(chosen), pad_id)
        return (answer if cfg.loss_span == "answer" else full).to(device)

    if cfg.batch_size is None and not world.distributed:
        batch = batch_of(examples)

        def make_op(params: list) -> Any:
            return hvp_operator(lambda: default_loss(model, batch), params)
    else:
        size = cfg.batch_size or math.ceil(len(examples) / world.size)
        chunks = [examples[i:i + size] for i in range(0, len(examples), size)]
        mine = [batch_of(c) for j, c in enumerate(chunks) if j % world.size == world.rank]
        reduce = (lambda ts: distributed.sum_tensors(world, ts)) if world.distributed else None

        def make_op(params: list) -> Any:
            return dataset_hvp_operator(
                [(lambda b=b: default_loss(model, b), b.n_tokens) for b in mine], params,
                reduce=reduce)

    n_params = sum(p.numel() for _, p in named)
    if cfg.top_k > n_params:
        raise UserError(f"--top-k {cfg.top_k}: the model has only {n_params} trainable "
                        "parameters, so at most that many eigenvalues")

    def measure(params: list) -> dict[str, Any]:
        k = min(cfg.top_k, sum(p.numel() for p in params))  # a block smaller than k
        op = make_op(params)
        res = eigenvalues_of(op, params, k=k, method=cfg.method, tol=cfg.tol,
                             max_iter=cfg.max_iter, seed=cfg.seed)
        out = {"eigenvalues": res.eigenvalues, "trace": math.nan, "hvps": res.hvps,
               "converged": res.converged}
        if cfg.trace_samples > 0:
            tr = trace_of(op, params, n_samples=cfg.trace_samples, seed=cfg.seed)
            out.update(trace=tr.trace, hvps=res.hvps + tr.hvps, trace_stderr=tr.stderr)
        return out

    with eval_mode(model), hvp_attention(model):
        whole = measure([p for _, p in named])
        layers = []
        if cfg.per_layer:
            for layer in sorted({layer_index(n) for n, _ in named}):
                r = measure([p for n, p in named if layer_index(n) == layer])
                layers.append({"layer": layer, **r})
    return HessianResult(whole, layers, len(examples))
