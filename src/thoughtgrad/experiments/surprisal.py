# SPDX-License-Identifier: MIT
"""The surprisal study behind ``thoughtgrad surprisal`` (seed 000): per-token surprisal and
logit-gradient norms of a model on one condition's responses, written into a run
directory that holds one set of rows per condition."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from thoughtgrad.dynamics.surprisal import DEFAULT_TAU
from thoughtgrad.experiments.dynamics import check_regime
from thoughtgrad.models.placement import input_device, parse_device_map
from thoughtgrad.runs.store import RunDir


@dataclass(frozen=True)
class SurprisalConfig:
    """One condition's surprisal measurement (saved in the manifest under its condition)."""

    model: str
    """gpt_mini checkpoint or Hugging Face model directory / id"""
    data: str = "toy:addition"
    """toy:<task> or an Alpaca-style JSON/JSONL file"""
    regime: str = "cot"
    """response variant (cot = the data's responses unchanged)"""
    condition: str | None = None
    """condition label of the rows (default: the regime)"""
    tau: float = DEFAULT_TAU
    """logit-gradient-norm threshold for counting spikes (norms lie in [0, sqrt 2])"""
    limit: int | None = None
    """only the first N records of the data file"""
    batch_size: int = 8
    """samples per forward pass"""
    max_length: int = 512
    """token bound per sample"""
    chat_template: bool = False
    """wrap prompts in the tokenizer's chat template (instruct models)"""
    seed: int = 0
    """seed of the dropped reasoning steps"""
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ..."""
    device_map: str | None = None
    """spread a model too large for one device over the GPUs (then the CPU) with
    accelerate: auto, balanced, sequential, or a JSON object / .json file of module path ->
    device; replaces --device"""

    def __post_init__(self) -> None:
        check_regime(self.regime)
        parse_device_map(self.device_map)

    @property
    def label(self) -> str:
        """The rows' condition: ``condition`` when given, else the regime."""
        return self.condition or self.regime


def run_surprisal(cfg: SurprisalConfig, run: RunDir) -> pd.DataFrame:
    """Measure ``cfg``'s condition and replace that condition's rows in ``run``'s
    ``surprisal``, ``surprisal_samples`` and ``surprisal_failed`` tables (other conditions
    are kept); return every condition's ``surprisal_samples`` rows."""
    from thoughtgrad.experiments.dynamics import measure_surprisal
    from thoughtgrad.experiments.dynamics_data import load_examples
    from thoughtgrad.models.hf import load_model

    model = load_model(cfg.model, device=cfg.device, device_map=cfg.device_map)
    device = input_device(model)  # a device map's first block; logits come back there
    examples, pad_id, failed = load_examples(model, cfg.model, cfg.data, cfg.regime,
                                             seed=cfg.seed, limit=cfg.limit,
                                             max_length=cfg.max_length,
                                             chat_template=cfg.chat_template)
    condition = cfg.label
    tokens, samples = measure_surprisal(model, examples, pad_id=pad_id, condition=condition,
                                        device=device, batch_size=cfg.batch_size, tau=cfg.tau)
    run.replace_rows("surprisal", "condition", condition, tokens)
    samples = run.replace_rows("surprisal_samples", "condition", condition, samples)
    run.replace_rows("surprisal_failed", "condition", condition,
                     pd.DataFrame([{"condition": condition, **f} for f in failed],
                                  columns=["condition", "sample_id", "source", "reason"]))
    settings = run.manifest().get("surprisal", {})
    settings[condition] = dataclasses.asdict(cfg)
    run.update_manifest(surprisal=settings)
    run.set_status("completed", samples=len(samples), failed=len(failed))
    return samples


def surprisal_summary(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per condition: samples, tokens, mean total and max bits, tokens above tau,
    Lemma 2 violations."""
    return samples.groupby("condition", sort=False).agg(
        samples=("sample_id", "count"), tokens=("n_tokens", "sum"),
        mean_total_bits=("total_surprisal_bits", "mean"),
        mean_max_bits=("max_surprisal_bits", "mean"),
        tokens_above_tau=("n_above_tau", "sum"),
        lemma2_violations=("lemma2_violations", "sum")).reset_index()
