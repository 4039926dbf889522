# SPDX-License-Identifier: MIT
"""The layer-spectra study over data files: records -> token batches -> ``spectra`` rows.

:func:`run_spectra` loads a causal LM and its tokenizer, reads and labels every record of
the data files, encodes them (:mod:`thoughtgrad.tasks.encode`), groups them into batches
of at most ``batch_tokens`` padded tokens, and appends, for each batch, one shard to the
run's ``spectra_samples`` table (one row per sample: labels, prompt and response excerpts,
tokens, loss, mean and largest nuclear norm) and one to ``spectra`` (the rows of
:func:`thoughtgrad.spectra.layer_spectra` with the record's labels and the measurement's
settings).

Resumable: samples already in ``spectra`` are skipped, keyed by ``(source, sample_id)``; the
settings that change the numbers are the run's ``identity`` in the manifest
(:meth:`thoughtgrad.runs.store.RunDir.create` refuses another), and a data file whose
bytes changed is refused too. A batch that raises (out of memory, a runtime error) is
retried sample by sample; a sample that still fails, or cannot be encoded (its prompt
fills ``max_length``, no answer found for ``loss_span="answer"``), is appended to
``spectra_failed`` with its reason and the run goes on. Failed samples are tried again on
resume; a failure whose sample was measured later is resolved
(:func:`thoughtgrad.report.compare.open_failures`).
A run that ends with no measured sample at all raises :class:`UserError`.

Under ``torchrun`` / ``accelerate launch`` (a :class:`~thoughtgrad.distributed.World` of
several ranks) every rank measures the samples it owns
(:func:`thoughtgrad.distributed.owner` of ``(source, sample_id)``, not arrival order) and
appends its own shards (the run directory's ``writer`` tag); rank 0 alone checks and
updates the manifest, shows the whole job's progress (a sum over ranks after every batch
round) and, after a barrier, recounts the finished run from the tables. The done set is
read from the tables, so a run killed on any rank resumes with any number of ranks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from thoughtgrad import distributed
from thoughtgrad.config import seed_everything
from thoughtgrad.distributed import World
from thoughtgrad.errors import UserError
from thoughtgrad.experiments.spectra_config import SpectraConfig
from thoughtgrad.experiments.spectra_tables import (
    COLUMNS,
    FAILED_TABLE,
    SAMPLES_TABLE,
    TABLE,
    Item,
    failed_frame,
    failed_row,
    label_frame,
    sample_rows,
    with_settings,
)
from thoughtgrad.models.hf import model_provenance
from thoughtgrad.models.placement import input_device
from thoughtgrad.runs.store import RunDir, check_identity, file_sha256
from thoughtgrad.tasks.encode import EncodeConfig, EncodeError, encode, token_batches
from thoughtgrad.tasks.records import load_many
from thoughtgrad.tasks.tokens import collate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpectraSummary:
    """What a call to :func:`run_spectra` found and did (counts of samples)."""

    samples: int
    already_done: int
    computed: int
    failed: int
    truncated: int
    rows: int


# -- model ---------------------------------------------------------------------------------
def load(cfg: SpectraConfig) -> tuple[nn.Module, Any]:
    """The model (re-initialised when ``init="random"``) and tokenizer, eval mode."""
    from thoughtgrad.models.hf import load_model, load_tokenizer

    tokenizer = load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
    model = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device, device_map=cfg.device_map,
                       trust_remote_code=cfg.trust_remote_code,
                       attn_implementation=cfg.attn_implementation)
    if cfg.init == "random":
        model = reinitialise(model, cfg.seed)
    return model.eval(), tokenizer


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """A freshly initialised model of the same architecture, seeded; same dtype and device.

    Hugging Face models are rebuilt from their config (their own init scheme) on the CPU
    and placed where ``model`` is: on its device, or by its device map (accelerate's
    ``dispatch_model``; a map offloading to disk cannot be re-created); gpt_mini re-runs its
    seeded ``reset_parameters``. The global RNG is left untouched.
    """
    if getattr(getattr(model, "config", None), "model_type", None) == "gpt_mini":
        model.reset_parameters(seed)
        return model
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "dtype"):
        raise UserError(f"--init random: cannot re-initialise a {type(model).__name__}")
    from transformers import AutoModelForCausalLM

    from thoughtgrad.models.placement import input_device

    attn = getattr(config, "_attn_implementation", None) or "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = AutoModelForCausalLM.from_config(config, dtype=model.dtype,
                                                 attn_implementation=attn)
    device_map = getattr(model, "hf_device_map", None)  # set by accelerate's dispatch
    if not device_map:
        return fresh.to(input_device(model)).eval()
    if "disk" in device_map.values():
        raise UserError("--init random: cannot re-create a device map that offloads to disk; "
                        "give a map of GPUs and CPU")
    from accelerate import dispatch_model

    return dispatch_model(fresh, device_map=dict(device_map)).eval()


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
def _keys(df: pd.DataFrame) -> set[tuple[str, int]]:
    return set(zip(df["source"].astype(str), df["sample_id"].astype(int), strict=True))


def _done_keys(run: RunDir, table: str) -> set[tuple[str, int]]:
    if not run.has_table(table):
        return set()
    return _keys(run.read(table, columns=["source", "sample_id"]))


def _truncated_keys(run: RunDir) -> set[tuple[str, int]]:
    """Samples measured by earlier invocations whose response was cut (none for a table
    written before ``spectra_samples`` had a ``truncated`` column)."""
    if not run.has_table(SAMPLES_TABLE):
        return set()
    df = run.read(SAMPLES_TABLE)
    return _keys(df[df["truncated"].astype(bool)]) if "truncated" in df else set()


def data_hashes(cfg: SpectraConfig) -> dict[str, str]:
    """sha256 of each data file that exists, keyed by its absolute path."""
    return {str(Path(p).resolve()): file_sha256(p) for p in cfg.data if Path(p).is_file()}


def check_resume(cfg: SpectraConfig, run: RunDir) -> None:
    """Refuse (one line) to continue a run whose data bytes changed.

    The settings are checked by :func:`thoughtgrad.runs.store.check_identity` (called by
    :meth:`RunDir.create` with ``identity=cfg.identity()``, and by :func:`run_spectra`).
    """
    old = run.manifest().get("data_sha256") or {}
    for path, digest in data_hashes(cfg).items():
        if path in old and old[path] != digest:
            raise UserError(f"{path}: changed since {run.path} was started (sha256 differs); "
                            f"use a new --out")


def check_launch(cfg: SpectraConfig, world: World) -> None:
    """Refuse a device map under a launcher (one line, on every rank, before any work)."""
    if world.distributed and cfg.device_map is not None:
        raise UserError("--device-map under a launcher: every rank would spread its copy of "
                        "the model over every GPU; use one process with --device-map, or one "
                        "rank per GPU without it")


# -- the run ---------------------------------------------------------------------------------
def run_spectra(cfg: SpectraConfig, run: RunDir, *,
                progress: Callable[[int], None] | None = None,
                on_total: Callable[[int], None] | None = None,
                world: World = distributed.SINGLE) -> SpectraSummary:
    """Measure every not-yet-measured sample of ``cfg.data``; append rows shard by shard.

    ``on_total`` is called once with the number of samples left to measure, ``progress``
    after each batch with the number of samples it finished (measured or failed). The
    manifest gets the identity, the model id, each data file's sha256 and the counts
    (``samples``, ``done``, ``truncated``, ``failed``: samples with a standing failure); the
    caller sets the status. Raises :class:`UserError` when the run holds no measured
    sample at the end (its failures are kept in ``spectra_failed``).

    With a ``world`` of several ranks (``run`` opened with this rank's ``writer`` tag), the
    callbacks are called on rank 0 only, with the whole job's numbers, and the summary's
    counts are sums over the ranks.
    """
    check_launch(cfg, world)
    records = load_many(cfg.data, conditions=cfg.condition, limit=cfg.limit,
                        prompt_field=cfg.prompt_field, response_field=cfg.response_field)
    if world.main:
        check_resume(cfg, run)
        check_identity(run.path, run.manifest(), cfg.identity())
        run.update_manifest(identity=cfg.identity(), model=cfg.model_id(),
                            data_sha256=data_hashes(cfg))
        run.check(TABLE, SAMPLES_TABLE, FAILED_TABLE)  # unreadable shards out: measured again
    distributed.barrier(world)  # the other ranks read the tables once rank 0 checked them
    if world.distributed:
        cfg = replace(cfg, device=distributed.device_for(world, cfg.device))
    done = _done_keys(run, TABLE)
    measured = set(done)  # grows as batches finish
    latest = _latest_failures(run)  # (source, sample_id) -> its latest recorded reason
    cut = _truncated_keys(run)  # measured samples whose response was cut; grows per batch
    selected = {(r.labels.source, r.sample_id) for r in records}

    seed_everything(cfg.seed)
    model, tokenizer = load(cfg)
    if world.main:
        run.update_manifest(model_provenance=model_provenance(cfg.model))  # GGUF name, sha256
    _check_roles(model, cfg)
    limit = model_max_length(model)
    if cfg.max_length is not None:
        limit = cfg.max_length if limit is None else min(limit, cfg.max_length)
    enc_cfg = EncodeConfig(max_length=limit, chat_template=cfg.chat_template,
                           loss_span=cfg.loss_span, answer_pattern=cfg.answer_pattern,
                           **({"system_prompt": cfg.system_prompt} if cfg.system_prompt else {}))

    items: list[Item] = []
    failed_rows: list[dict[str, Any]] = []
    truncated = 0
    for rec in records:
        key = (rec.labels.source, rec.sample_id)
        if key in done or distributed.owner(key, world.size) != world.rank:
            continue
        try:
            enc = encode(tokenizer, rec.prompt, rec.output, enc_cfg, reference=rec.reference)
        except EncodeError as exc:
            failed_rows.append(failed_row(rec, str(exc)))
            continue
        truncated += enc.truncated
        items.append(Item(rec, enc))
    if truncated:
        log.warning("%d of %d samples truncated to %s tokens", truncated, len(items), limit)
    total, first = distributed.sum_counts(world, [len(items) + len(failed_rows),
                                                  len(failed_rows)])
    if on_total is not None and world.main:
        on_total(int(total))
    _append_failures(run, failed_rows, latest)
    if progress is not None and world.main and first:
        progress(int(first))

    device = input_device(model)  # where the batches go (a device map's first block)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n_rows, n_failed, n_computed = 0, len(failed_rows), 0
    batches = list(token_batches([len(it.encoded) for it in items], cfg.batch_tokens))
    # ranks step through batch rounds together, so rank 0 can show the whole job's progress
    for i in range(distributed.max_count(world, len(batches))):
        finished = 0
        if i < len(batches):
            batch = [items[j] for j in batches[i]]
            frame, per_sample, failures = _measure(model, tokenizer, batch, cfg, pad_id, device)
            if not frame.empty:
                run.append_batch({SAMPLES_TABLE: per_sample, TABLE: frame})  # one commit point
                n_rows += len(frame)
                n_computed += len(batch) - len(failures)
                measured.update(_keys(frame))
                cut.update(_keys(per_sample[per_sample["truncated"]]))
            _append_failures(run, failures, latest)
            n_failed += len(failures)
            finished = len(batch)
        if world.distributed:
            finished = int(distributed.sum_counts(world, [finished])[0])
        if world.main:
            if not world.distributed:
                _update_counts(run, selected, measured, latest, cut)
            if progress is not None and finished:
                progress(finished)
    distributed.barrier(world)  # every rank's shards are in place
    if world.distributed:
        n_computed, n_failed, truncated, n_rows = (int(v) for v in distributed.sum_counts(
            world, [n_computed, n_failed, truncated, n_rows]))
        if not world.main:
            return SpectraSummary(samples=len(records), already_done=len(done & selected),
                                  computed=n_computed, failed=n_failed, truncated=truncated,
                                  rows=n_rows)
        measured, latest, cut = _done_keys(run, TABLE), _latest_failures(run), \
            _truncated_keys(run)  # rank 0 recounts the whole job from the tables
    counts = _update_counts(run, selected, measured, latest, cut)
    if counts["done"] == 0:
        first = next((r for k, r in latest.items() if k in selected), "no sample was selected")
        raise UserError(f"{run.path}: no sample could be measured ({counts['failed']} failed; "
                        f"first: {first}); see {run.table_path(FAILED_TABLE)}")
    return SpectraSummary(samples=len(records), already_done=len(done & selected),
                          computed=n_computed, failed=n_failed, truncated=truncated,
                          rows=n_rows)


def _update_counts(run: RunDir, selected: set[tuple[str, int]],
                   measured: set[tuple[str, int]], latest: dict[tuple[str, int], str],
                   cut: set[tuple[str, int]]) -> dict[str, int]:
    """Write the manifest's counts for the selected samples over every invocation of the run
    (``failed``: those with a standing failure, see
    :func:`thoughtgrad.report.compare.open_failures`; ``truncated``: measured samples whose
    response was cut at the length limit); return them."""
    counts = {"samples": len(selected), "done": len(measured & selected),
              "failed": len((set(latest) - measured) & selected),
              "truncated": len(cut & measured & selected)}
    run.update_manifest(counts=counts)
    return counts


def _latest_failures(run: RunDir) -> dict[tuple[str, int], str]:
    if not run.has_table(FAILED_TABLE):
        return {}
    df = run.read(FAILED_TABLE)
    return dict(zip(zip(df["source"].astype(str), df["sample_id"].astype(int), strict=True),
                    df["reason"].astype(str), strict=True))  # later rows win


def _append_failures(run: RunDir, rows: list[dict[str, Any]],
                     latest: dict[tuple[str, int], str]) -> None:
    """Append failures whose reason differs from their sample's latest recorded one (a
    resumed run retries failed samples; a deterministic failure is recorded once)."""
    new = [r for r in rows if latest.get((r["source"], r["sample_id"])) != r["reason"]]
    if new:
        run.append(FAILED_TABLE, failed_frame(new))
    latest.update(((r["source"], r["sample_id"]), r["reason"]) for r in rows)


def _measure(model: nn.Module, tokenizer: Any, batch: Sequence[Item], cfg: SpectraConfig,
             pad_id: int, device: torch.device
             ) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Rows and per-sample rows of one batch; on a runtime failure, retry each sample alone."""
    try:
        frame = _rows(model, batch, cfg, pad_id, device)
        return frame, sample_rows(frame, batch, tokenizer, cfg), []
    except (RuntimeError, ValueError, IndexError) as exc:
        if isinstance(exc, UserError):
            raise
        log.warning("batch of %d samples failed (%s); retrying one by one", len(batch),
                    _reason(exc))
        _free(device)
    frames, good, failures = [], [], []
    for item in batch:
        try:
            frames.append(_rows(model, [item], cfg, pad_id, device))
            good.append(item)
        except (RuntimeError, ValueError, IndexError) as exc:
            if isinstance(exc, UserError):
                raise
            failures.append(failed_row(item.record, _reason(exc)))
            _free(device)
    if not frames:
        return pd.DataFrame(), pd.DataFrame(), failures
    frame = pd.concat(frames, ignore_index=True)
    return frame, sample_rows(frame, good, tokenizer, cfg), failures


def _rows(model: nn.Module, batch: Sequence[Item], cfg: SpectraConfig, pad_id: int,
          device: torch.device) -> pd.DataFrame:
    from thoughtgrad.spectra import layer_spectra

    ids, labels, mask = collate([it.encoded for it in batch], pad_id)
    df = layer_spectra(model, ids.to(device), labels.to(device), mask.to(device),
                       roles=cfg.roles, method=cfg.method, loss_reduction=cfg.loss_reduction,
                       include_fused=cfg.include_fused, recompute_layers=cfg.recompute_layers)
    lab = label_frame([it.record for it in batch]).assign(sample=range(len(batch)))
    out = lab.merge(df, on="sample", how="inner", validate="one_to_many").drop(columns="sample")
    return with_settings(out, cfg)[list(COLUMNS)]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()

