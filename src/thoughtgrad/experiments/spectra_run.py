# SPDX-License-Identifier: MIT
"""The layer-spectra study over data files: records -> token batches -> ``spectra`` rows.

:func:`run_spectra` loads a causal LM and its tokenizer, reads and labels every record of
the data files, encodes them (:mod:`thoughtgrad.tasks.encode`), groups them into batches
of at most ``batch_tokens`` padded tokens, and appends the rows of
:func:`thoughtgrad.spectra.layer_spectra` for each batch, with the record's labels and the
measurement's settings, to the run's ``spectra`` table as one shard.

Resumable: samples already in ``spectra`` (or in ``spectra_failed``) are skipped, keyed by
``(source, sample_id)``; the settings that change the numbers are stored in the manifest
and a different configuration is refused. A batch that raises (out of memory, a runtime
error) is retried sample by sample; a sample that still fails, or cannot be encoded (its
prompt fills ``max_length``, no answer found for ``loss_span="answer"``), is appended to
``spectra_failed`` with its reason and the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from thoughtgrad.config import seed_everything
from thoughtgrad.errors import UserError
from thoughtgrad.report.store import RunDir, file_sha256
from thoughtgrad.tasks.encode import (
    LOSS_SPANS,
    EncodeConfig,
    Encoded,
    EncodeError,
    collate,
    encode,
    token_batches,
)
from thoughtgrad.tasks.records import Record, load_many

log = logging.getLogger(__name__)

TABLE = "spectra"
FAILED_TABLE = "spectra_failed"

LABEL_COLUMNS: tuple[str, ...] = ("sample_id", "source", "cot_level", "response_kind",
                                  "condition")
SETTING_COLUMNS: tuple[str, ...] = ("loss_reduction", "loss_span", "init", "model")
STAT_COLUMNS: tuple[str, ...] = ("layer", "role", "param", "nuclear", "sigma_max", "sigma_min",
                                 "ratio", "frobenius", "effective_rank", "rank", "n_tokens",
                                 "loss")
COLUMNS: tuple[str, ...] = (*LABEL_COLUMNS, *STAT_COLUMNS, *SETTING_COLUMNS)
"""Columns of the ``spectra`` table, in order (docs/architecture.md)."""

RESUME_FREE: tuple[str, ...] = ("limit", "device", "batch_tokens")
"""Config fields that may change between a run and its resumption: they select samples
or place work but do not change any number already written."""

INITS = ("pretrained", "random")


@dataclass(frozen=True)
class SpectraConfig:
    """Everything that defines a ``thoughtgrad spectra`` run (saved in the manifest).

    ``max_length`` ``None`` means the model's maximum positions. ``condition`` is one label
    for every file or one per file. ``init="random"`` re-initialises the same architecture
    with ``seed`` (the untrained-model control).
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

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        d = dataclasses.asdict(self)
        for name in RESUME_FREE:
            d.pop(name)
        d["data"] = [str(Path(p).resolve()) for p in self.data]
        local = Path(self.model).expanduser()
        d["model"] = str(local.resolve()) if local.is_dir() else self.model
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class SpectraSummary:
    """What a call to :func:`run_spectra` found and did (counts of samples)."""

    samples: int
    already_done: int
    computed: int
    failed: int
    truncated: int
    rows: int


@dataclass(frozen=True)
class _Item:
    record: Record
    encoded: Encoded


# -- model ---------------------------------------------------------------------------------
def load(cfg: SpectraConfig) -> tuple[nn.Module, Any]:
    """The model (re-initialised when ``init="random"``) and tokenizer, eval mode."""
    from thoughtgrad.models.hf import load_model, load_tokenizer

    tokenizer = load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
    model = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device,
                       trust_remote_code=cfg.trust_remote_code)
    if cfg.init == "random":
        model = reinitialise(model, cfg.seed)
    return model.eval(), tokenizer


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """A freshly initialised model of the same architecture, seeded; same dtype and device.

    Hugging Face models are rebuilt from their config (their own init scheme); gpt_mini
    re-runs its seeded ``reset_parameters``. The global RNG is left untouched.
    """
    from thoughtgrad.models.gpt_mini import GPTMini

    if isinstance(model, GPTMini):
        model.reset_parameters(seed)
        return model
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "dtype"):
        raise UserError(f"--init random: cannot re-initialise a {type(model).__name__}")
    from transformers import AutoModelForCausalLM

    device = next(model.parameters()).device
    attn = getattr(config, "_attn_implementation", None) or "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = AutoModelForCausalLM.from_config(config, dtype=model.dtype,
                                                 attn_implementation=attn)
    return fresh.to(device).eval()


def model_max_length(model: nn.Module) -> int | None:
    """The model's maximum number of positions, when its config states one."""
    config = getattr(model, "config", None) or getattr(model, "cfg", None)
    for name in ("max_position_embeddings", "n_positions", "block_size"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _check_roles(model: nn.Module, cfg: SpectraConfig) -> None:
    """Fail before any work when the architecture has no role table or no selected role."""
    from thoughtgrad.models.roles import matrix_views

    try:
        views = matrix_views(model, roles=cfg.roles, include_fused=cfg.include_fused)
    except UserError as exc:
        raise UserError(f"model {cfg.model}: {exc}") from None
    if not views:
        raise UserError(f"model {cfg.model}: no weight matrix has the roles "
                        f"{', '.join(cfg.roles or ())}")


# -- resume bookkeeping ----------------------------------------------------------------------
def _done_keys(run: RunDir, table: str) -> set[tuple[str, int]]:
    if not run.has_table(table):
        return set()
    df = run.read(table, columns=["source", "sample_id"])
    return set(zip(df["source"].astype(str), df["sample_id"].astype(int), strict=True))


def data_hashes(cfg: SpectraConfig) -> dict[str, str]:
    """sha256 of each data file that exists, keyed by its absolute path."""
    return {str(Path(p).resolve()): file_sha256(p) for p in cfg.data if Path(p).is_file()}


def check_resume(cfg: SpectraConfig, run: RunDir) -> None:
    """Refuse (one line) to continue a run made with other settings or other data bytes."""
    hashes = data_hashes(cfg)
    manifest = run.manifest()
    before = manifest.get("spectra_identity")
    if before is not None and before != cfg.identity():
        changed = sorted(k for k in set(before) | set(cfg.identity())
                         if before.get(k) != cfg.identity().get(k))
        raise UserError(f"{run.path}: holds a spectra run with different settings "
                        f"({', '.join(changed)}); use a new --out to measure these")
    old = manifest.get("data_sha256") or {}
    for path, digest in hashes.items():
        if path in old and old[path] != digest:
            raise UserError(f"{path}: changed since {run.path} was started (sha256 differs); "
                            f"use a new --out")


# -- the run ---------------------------------------------------------------------------------
def run_spectra(cfg: SpectraConfig, run: RunDir, *,
                progress: Callable[[int], None] | None = None,
                on_total: Callable[[int], None] | None = None) -> SpectraSummary:
    """Measure every not-yet-measured sample of ``cfg.data``; append rows shard by shard.

    ``on_total`` is called once with the number of samples left to measure, ``progress``
    after each batch with the number of samples it finished (measured or failed). The
    manifest gets the model id, each data file's sha256 and the counts (``samples``,
    ``done``, ``truncated``, ``failed``); the caller sets the status.
    """
    records = load_many(cfg.data, conditions=cfg.condition, limit=cfg.limit,
                        prompt_field=cfg.prompt_field, response_field=cfg.response_field)
    check_resume(cfg, run)
    run.update_manifest(spectra_identity=cfg.identity(), model=cfg.model,
                        data_sha256=data_hashes(cfg))
    done = _done_keys(run, TABLE) | _done_keys(run, FAILED_TABLE)

    seed_everything(cfg.seed)
    model, tokenizer = load(cfg)
    _check_roles(model, cfg)
    limit = model_max_length(model)
    if cfg.max_length is not None:
        limit = cfg.max_length if limit is None else min(limit, cfg.max_length)
    enc_cfg = EncodeConfig(max_length=limit, chat_template=cfg.chat_template,
                           loss_span=cfg.loss_span, answer_pattern=cfg.answer_pattern,
                           **({"system_prompt": cfg.system_prompt} if cfg.system_prompt else {}))

    items: list[_Item] = []
    failed_rows: list[dict[str, Any]] = []
    truncated = 0
    for rec in records:
        try:
            enc = encode(tokenizer, rec.prompt, rec.output, enc_cfg)
        except EncodeError as exc:
            if (rec.labels.source, rec.sample_id) not in done:
                failed_rows.append(_failed_row(rec, str(exc)))
            continue
        truncated += enc.truncated
        if (rec.labels.source, rec.sample_id) not in done:
            items.append(_Item(rec, enc))
    if truncated:
        log.warning("%d of %d samples truncated to %s tokens", truncated, len(records), limit)
    if on_total is not None:
        on_total(len(items) + len(failed_rows))
    if failed_rows:
        run.append(FAILED_TABLE, _failed_frame(failed_rows))
        if progress is not None:
            progress(len(failed_rows))

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n_done = len(_done_keys(run, TABLE))
    n_failed_total = len(_done_keys(run, FAILED_TABLE))
    n_rows, n_failed = 0, len(failed_rows)
    for batch_idx in token_batches([len(it.encoded) for it in items], cfg.batch_tokens):
        batch = [items[i] for i in batch_idx]
        frame, failures = _measure(model, batch, cfg, pad_id, device)
        if not frame.empty:
            run.append(TABLE, frame)
            n_rows += len(frame)
            n_done += len(batch) - len(failures)
        if failures:
            run.append(FAILED_TABLE, _failed_frame(failures))
            n_failed += len(failures)
            n_failed_total += len(failures)
        run.update_manifest(counts={"samples": len(records), "done": n_done,
                                    "failed": n_failed_total, "truncated": truncated})
        if progress is not None:
            progress(len(batch))
    run.update_manifest(counts={"samples": len(records), "done": n_done,
                                "failed": n_failed_total, "truncated": truncated})
    selected = {(r.labels.source, r.sample_id) for r in records}
    return SpectraSummary(samples=len(records), already_done=len(done & selected),
                          computed=len(items) - (n_failed - len(failed_rows)),
                          failed=n_failed, truncated=truncated, rows=n_rows)


def _measure(model: nn.Module, batch: Sequence[_Item], cfg: SpectraConfig, pad_id: int,
             device: torch.device) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Rows of one batch; on a runtime failure, retry each sample alone."""
    try:
        return _rows(model, batch, cfg, pad_id, device), []
    except (RuntimeError, ValueError, IndexError) as exc:
        if isinstance(exc, UserError):
            raise
        log.warning("batch of %d samples failed (%s); retrying one by one", len(batch),
                    _reason(exc))
        _free(device)
    frames, failures = [], []
    for item in batch:
        try:
            frames.append(_rows(model, [item], cfg, pad_id, device))
        except (RuntimeError, ValueError, IndexError) as exc:
            if isinstance(exc, UserError):
                raise
            failures.append(_failed_row(item.record, _reason(exc)))
            _free(device)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame, failures


def _rows(model: nn.Module, batch: Sequence[_Item], cfg: SpectraConfig, pad_id: int,
          device: torch.device) -> pd.DataFrame:
    from thoughtgrad.spectra import layer_spectra

    ids, labels, mask = collate([it.encoded for it in batch], pad_id)
    df = layer_spectra(model, ids.to(device), labels.to(device), mask.to(device),
                       roles=cfg.roles, method=cfg.method, loss_reduction=cfg.loss_reduction,
                       include_fused=cfg.include_fused)
    recs = [it.record for it in batch]
    lab = pd.DataFrame({
        "sample": range(len(recs)),
        "sample_id": [r.sample_id for r in recs],
        "source": [r.labels.source for r in recs],
        "cot_level": [r.labels.cot_level for r in recs],
        "response_kind": [r.labels.response_kind for r in recs],
        "condition": [r.labels.condition for r in recs],
    })
    out = lab.merge(df, on="sample", how="inner", validate="one_to_many").drop(columns="sample")
    out["loss_reduction"] = cfg.loss_reduction
    out["loss_span"] = cfg.loss_span
    out["init"] = cfg.init
    out["model"] = cfg.model
    for col in ("source", "cot_level", "response_kind", "condition", "role", "param",
                *SETTING_COLUMNS):
        out[col] = out[col].astype("string")
    return out[list(COLUMNS)]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _failed_row(rec: Record, reason: str) -> dict[str, Any]:
    return {"sample_id": rec.sample_id, "source": rec.labels.source, "reason": reason}


def _failed_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["sample_id", "source", "reason"])
    df["sample_id"] = df["sample_id"].astype("int64")
    return df.astype({"source": "string", "reason": "string"})
