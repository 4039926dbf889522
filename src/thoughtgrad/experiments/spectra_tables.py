# SPDX-License-Identifier: MIT
"""The tables of a spectra run: their columns and the rows of one measured batch.

* ``spectra``: one row per sample x weight matrix (:data:`COLUMNS`): the record's labels
  (:func:`label_frame`), the rows of :func:`thoughtgrad.spectra.layer_spectra` and the
  measurement's settings (:func:`with_settings`);
* ``spectra_samples``: one row per measured sample (:data:`SAMPLE_COLUMNS`,
  :func:`sample_rows`): labels, prompt and response excerpts, tokens, loss, mean and
  largest nuclear norm;
* ``spectra_failed``: one row per failed attempt (:func:`failed_row`, :func:`failed_frame`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from thoughtgrad.experiments.spectra_config import SpectraConfig
from thoughtgrad.tasks.encode import Encoded
from thoughtgrad.tasks.records import Record
from thoughtgrad.tasks.tokens import IGNORE_INDEX

TABLE = "spectra"
FAILED_TABLE = "spectra_failed"
SAMPLES_TABLE = "spectra_samples"

LABEL_COLUMNS: tuple[str, ...] = ("sample_id", "source", "cot_level", "response_kind",
                                  "condition")
SETTING_COLUMNS: tuple[str, ...] = ("loss_reduction", "loss_span", "init", "init_seed",
                                    "model")
STAT_COLUMNS: tuple[str, ...] = ("layer", "role", "param", "nuclear", "sigma_max", "sigma_min",
                                 "ratio", "frobenius", "effective_rank", "rank", "n_tokens",
                                 "loss")
COLUMNS: tuple[str, ...] = (*LABEL_COLUMNS, *STAT_COLUMNS, *SETTING_COLUMNS)
"""Columns of the ``spectra`` table, in order (docs/architecture.md). ``model`` is the
resolved local directory or the hub id; ``init_seed`` the seed of ``init="random"`` (null
for pretrained weights)."""

SAMPLE_COLUMNS: tuple[str, ...] = (*LABEL_COLUMNS, "prompt", "response", "answer", "n_tokens",
                                   "truncated", "loss", "mean_nuclear", "max_nuclear",
                                   "max_layer", "max_role", *SETTING_COLUMNS)
"""Columns of the ``spectra_samples`` table: per sample, text excerpts (``answer``: the
loss-carrying text for ``loss_span="answer"``, else null), the loss-carrying token count,
whether the response was cut at the length limit, the sample's mean loss (nats per token),
and the mean and largest nuclear norm over its measured matrices with the layer and role of
the largest."""

EXCERPT_CHARS = 200
"""Length of the prompt and response excerpts in ``spectra_samples``."""


@dataclass(frozen=True)
class Item:
    """A record to measure and its encoding."""

    record: Record
    encoded: Encoded


def label_frame(recs: Sequence[Record]) -> pd.DataFrame:
    """The label columns (:data:`LABEL_COLUMNS`) of ``recs``, one row each."""
    return pd.DataFrame({
        "sample_id": [r.sample_id for r in recs],
        "source": [r.labels.source for r in recs],
        "cot_level": [r.labels.cot_level for r in recs],
        "response_kind": [r.labels.response_kind for r in recs],
        "condition": [r.labels.condition for r in recs],
    })


def with_settings(df: pd.DataFrame, cfg: SpectraConfig) -> pd.DataFrame:
    """``df`` with the settings columns, and string / nullable-int dtypes that every shard
    shares (so shards concatenate without object columns)."""
    df = df.assign(loss_reduction=cfg.loss_reduction, loss_span=cfg.loss_span, init=cfg.init,
                   init_seed=cfg.seed if cfg.init == "random" else None, model=cfg.model_id())
    df["init_seed"] = df["init_seed"].astype("Int64")
    for col in ("source", "cot_level", "response_kind", "condition", "role", "param",
                "prompt", "response", "answer", "max_role", "loss_reduction", "loss_span",
                "init", "model"):
        if col in df.columns:
            df[col] = df[col].astype("string")
    return df


def sample_rows(frame: pd.DataFrame, batch: Sequence[Item], tokenizer: Any,
                cfg: SpectraConfig) -> pd.DataFrame:
    """One ``spectra_samples`` row per measured sample of ``batch`` (see SAMPLE_COLUMNS)."""
    recs = [it.record for it in batch]
    out = label_frame(recs)
    out["prompt"] = [excerpt(r.prompt) for r in recs]
    out["response"] = [excerpt(r.output, tail=True) for r in recs]
    out["answer"] = [excerpt(loss_text(tokenizer, it.encoded)) if cfg.loss_span == "answer"
                     else None for it in batch]
    out["truncated"] = [bool(it.encoded.truncated) for it in batch]
    key = ["source", "sample_id"]
    g = frame.groupby(key, sort=False)
    finite = frame[np.isfinite(frame["nuclear"].astype(float))]  # an overflowed gradient: NaN
    top = finite.loc[finite.groupby(key, sort=False)["nuclear"].idxmax(),
                     [*key, "layer", "role"]].rename(columns={"layer": "max_layer",
                                                              "role": "max_role"})
    stats = g.agg(n_tokens=("n_tokens", "first"), loss=("loss", "first"),
                  mean_nuclear=("nuclear", "mean"), max_nuclear=("nuclear", "max")).reset_index()
    out = out.astype({"source": "string"}).merge(stats.astype({"source": "string"}), on=key,
                                                  how="inner")
    out = out.merge(top.astype({"source": "string"}), on=key, how="left")
    return with_settings(out, cfg)[list(SAMPLE_COLUMNS)]


def excerpt(text: str, *, chars: int = EXCERPT_CHARS, tail: bool = False) -> str:
    """``text`` with runs of whitespace as one space, cut to about ``chars`` characters:
    the start, or with ``tail`` the start and the end (where a response's answer is)."""
    flat = " ".join(text.split())
    if len(flat) <= chars:
        return flat
    if not tail:
        return flat[: chars - 1].rstrip() + "…"
    half = (chars - 3) // 2
    return f"{flat[:half].rstrip()} … {flat[-half:].lstrip()}"


def loss_text(tokenizer: Any, enc: Encoded) -> str:
    """The text of the loss-carrying tokens (the answer for ``loss_span="answer"``)."""
    return tokenizer.decode([t for t in enc.labels if t != IGNORE_INDEX]).strip()


def failed_row(rec: Record, reason: str) -> dict[str, Any]:
    return {"sample_id": rec.sample_id, "source": rec.labels.source, "reason": reason}


def failed_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["sample_id", "source", "reason"])
    df["sample_id"] = df["sample_id"].astype("int64")
    return df.astype({"source": "string", "reason": "string"})
