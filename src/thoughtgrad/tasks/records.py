# SPDX-License-Identifier: MIT
"""Prompt/response records from Alpaca-style JSON/JSONL or any JSON/JSONL/Parquet table.

A record is one training sample: a prompt (``instruction`` plus an optional ``input``) and
the ``output`` that carries the loss. Each record also carries the condition labels every
table row repeats, so comparisons are a group-by:

* ``source``: the file's stem (``gsm8k_train_no_cot``), or its path relative to the files'
  common folder when two files share a stem (``cot_500_wrong_answer_shuffle/gsm8k_train_no_cot``);
* ``cot_level``: ``none`` / ``simplified`` / ``detailed`` from the shared data's file names
  (``_no_cot``, ``_with_cot``, ``_with_cot_gpt4o``; ``thoughtgrad variants`` writes
  ``_none``, ``_simplified``, ``_detailed``, ``_half_steps``), else ``None``;
* ``response_kind``: ``irrelevant`` when a parent folder's name contains
  ``wrong_answer_shuffle`` or the stem ends in ``_irrelevant``, ``corrupted`` for a stem
  ending in ``_corrupted``, else ``correct``;
* ``condition``: ``--condition`` when given, else ``<cot_level>/<response_kind>``
  (``detailed/correct``), or the stem for files without a CoT level (``popular_wikipedia_500``,
  with ``/irrelevant`` appended for shuffled responses).

``sample_id`` is the record's 0-based index in its file. ``reference`` is the bare answer
to the same instruction when the dataset's ``none``-level file (``_no_cot`` / ``_none``, same
folder) is loaded with a CoT file of correct responses: ``--loss-span answer`` then finds
that answer in the long response. Every error names the file, the record and the field in
one line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtgrad.errors import UserError, where

ALPACA_FIELDS = ("instruction", "input", "output")
"""Field names of an Alpaca-style record; ``input`` may be missing or empty."""

SHUFFLED_FOLDER = "wrong_answer_shuffle"
"""A parent folder whose name contains this holds responses of other instructions."""

COT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_with_cot_gpt4o", "detailed"),
    ("_with_cot", "simplified"),
    ("_no_cot", "none"),
    ("_detailed", "detailed"),
    ("_simplified", "simplified"),
    ("_half_steps", "half_steps"),
    ("_none", "none"),
)
"""File-stem suffix -> CoT level, tried in order (longest shared-data suffix first)."""

KIND_SUFFIXES: tuple[tuple[str, str], ...] = (("_irrelevant", "irrelevant"),
                                               ("_corrupted", "corrupted"))
"""File-stem suffix -> response kind, for files written by ``thoughtgrad variants``."""

FORMATS = (".json", ".jsonl", ".parquet")


@dataclass(frozen=True)
class Labels:
    """The condition labels of one data file."""

    source: str
    cot_level: str | None
    response_kind: str
    condition: str


@dataclass(frozen=True)
class Record:
    """One prompt/response sample and the labels of the file it came from."""

    sample_id: int
    instruction: str
    input: str  # noqa: A003 - the Alpaca field's name
    output: str
    labels: Labels
    reference: str | None = None
    """The bare answer to the same instruction (the ``none``-level sibling file's response),
    when that file was loaded too; it locates the final answer in a long response."""

    @property
    def prompt(self) -> str:
        """The paper's prompt: ``instruction``, then ``"\\n" + input`` if input is non-empty."""
        return self.instruction + ("\n" + self.input if self.input else "")


# -- reading raw rows ---------------------------------------------------------------
def read_rows(path: str | os.PathLike[str], *, limit: int | None = None) -> list[dict[str, Any]]:
    """The file's records as dicts, in file order (the first ``limit`` when given).

    ``.json`` is one array of objects (a file of one object per line is read as JSONL),
    ``.jsonl`` one object per non-blank line, ``.parquet`` one row per record.
    """
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{p}: is a directory, not a data file (.json, .jsonl or .parquet)")
    if not p.is_file():
        raise UserError(f"{p}: no such data file")
    suffix = p.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"{p}: unknown data format {suffix or '(no suffix)'!r}; "
                        f"use one of {', '.join(FORMATS)}")
    if suffix == ".parquet":
        rows = _read_parquet(p, limit)
    else:
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{p}: not UTF-8 text (byte {exc.start})") from None
        rows = _read_jsonl(p, text, limit) if suffix == ".jsonl" else _read_json(p, text)
    if not rows:
        raise UserError(f"{p}: no records")
    for i, row in enumerate(rows[:limit]):
        if not isinstance(row, dict):
            raise UserError(f"{where(p, i)}: expected an object with fields, "
                            f"got {type(row).__name__}")
    return rows[:limit] if limit is not None else rows


def _read_json(p: Path, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            return _read_jsonl(p, text, None)  # one object per line in a .json file
        raise UserError(f"{p}: invalid JSON at line {exc.lineno}:{exc.colno}: {exc.msg}") from None
    if not isinstance(data, list):
        raise UserError(f"{p}: expected a JSON array of records, got a "
                        f"{type(data).__name__}")
    return data


def _read_jsonl(p: Path, text: str, limit: int | None) -> list[Any]:
    rows: list[Any] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if limit is not None and len(rows) >= limit:
            break
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserError(f"{p}: invalid JSON on line {lineno} (record {len(rows)}): "
                            f"{exc.msg} at column {exc.colno}") from None
    return rows


def _read_parquet(p: Path, limit: int | None) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        df = pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise UserError(f"{p}: unreadable Parquet file ({type(exc).__name__})") from None
    if limit is not None:
        df = df.head(limit)
    return df.to_dict(orient="records")


# -- fields -------------------------------------------------------------------------
def _text_field(p: Path, i: int, row: dict[str, Any], name: str, *, required: bool,
                hint: str = "") -> str:
    value = row.get(name)
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if missing:
        if not required:
            return ""
        known = ", ".join(repr(k) for k in row) or "none"
        raise UserError(f"{where(p, i, name)}: missing (the record has fields {known}){hint}")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{where(p, i, name)}: expected text, got {type(value).__name__}")
    return value if isinstance(value, str) else str(value)


def load_records(path: str | os.PathLike[str], labels: Labels, *, limit: int | None = None,
                 prompt_field: str | None = None,
                 response_field: str | None = None) -> list[Record]:
    """Read and validate the records of one file (the first ``limit`` when given).

    Alpaca fields by default; ``prompt_field`` / ``response_field`` name other fields (the
    prompt is then that field alone, with no ``input``). Numbers are accepted as text. An
    empty or whitespace-only response is an error: it would carry no loss.
    """
    p = Path(path)
    hint = "; name the fields with --prompt-field/--response-field"
    prompt_name = prompt_field or "instruction"
    response_name = response_field or "output"
    out: list[Record] = []
    for i, row in enumerate(read_rows(p, limit=limit)):
        instruction = _text_field(p, i, row, prompt_name, required=True, hint=hint)
        extra = "" if prompt_field else _text_field(p, i, row, "input", required=False)
        output = _text_field(p, i, row, response_name, required=True, hint=hint)
        if not output.strip():
            raise UserError(f"{where(p, i, response_name)}: empty response (no token would "
                            f"carry loss)")
        out.append(Record(i, instruction, extra, output, labels))
    return out


# -- labels -------------------------------------------------------------------------
def infer_labels(path: str | os.PathLike[str], *, source: str | None = None,
                 condition: str | None = None) -> Labels:
    """Condition labels from a file's name and folders (see the module docstring)."""
    p = Path(path)
    stem = p.stem
    kind = "correct"
    if any(SHUFFLED_FOLDER in part for part in p.resolve().parent.parts):
        kind = "irrelevant"
    base = stem
    for suffix, name in KIND_SUFFIXES:
        if base.endswith(suffix):
            kind, base = name, base[: -len(suffix)]
            break
    level = next((name for suffix, name in COT_SUFFIXES if base.endswith(suffix)), None)
    if condition is None:
        if level is not None:
            condition = f"{level}/{kind}"
        else:
            condition = stem if kind == "correct" else f"{stem}/{kind}"
    return Labels(source=source or stem, cot_level=level, response_kind=kind,
                  condition=condition)


def source_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """A short unique name per file: its stem, or more of its path when stems collide.

    Colliding files are named by their last folders plus stem (``a/b/x.json`` and
    ``c/b/x.json`` become ``a/b/x`` and ``c/b/x``), as few folders as make them unique.
    """
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        dup = next(str(p) for p in paths if resolved.count(Path(p).resolve()) > 1)
        raise UserError(f"{dup}: given twice with --data")
    stems = [r.stem for r in resolved]
    names = stems
    for depth in range(1, max(len(r.parts) for r in resolved)):
        if len(set(names)) == len(names):
            break
        names = [stem if stems.count(stem) == 1
                 else "/".join([*r.parent.parts[-depth:], stem])
                 for r, stem in zip(resolved, stems, strict=True)]
    return names


def load_many(paths: Sequence[str | os.PathLike[str]], *, conditions: Sequence[str] | None = None,
              limit: int | None = None, prompt_field: str | None = None,
              response_field: str | None = None) -> list[Record]:
    """Records of several files, labelled; ``conditions`` is one label for all or one per file.

    A CoT file whose bare-answer sibling (:func:`none_sibling`) is among ``paths`` gets
    that file's responses as ``reference`` answers, record by record.
    """
    if conditions and len(conditions) not in (1, len(paths)):
        raise UserError(f"--condition given {len(conditions)} times for {len(paths)} --data "
                        f"files; give it once (all files) or once per file")
    names = source_names(paths)
    per_file: list[list[Record]] = []
    for j, (path, name) in enumerate(zip(paths, names, strict=True)):
        cond = None
        if conditions:
            cond = conditions[0] if len(conditions) == 1 else conditions[j]
        labels = infer_labels(path, source=name, condition=cond)
        per_file.append(load_records(path, labels, limit=limit, prompt_field=prompt_field,
                                     response_field=response_field))
    for j, path in enumerate(paths):
        sibling = none_sibling(path, paths)
        if sibling is not None:
            per_file[j] = with_references(per_file[j], per_file[list(paths).index(sibling)])
    return [r for recs in per_file for r in recs]


def dataset_stem(stem: str) -> str:
    """A file stem without its response-kind and CoT-level suffixes, stripped repeatedly
    (``gsm8k_train_with_cot_gpt4o_detailed`` -> ``gsm8k_train``)."""
    changed = True
    while changed:
        changed = False
        for suffix, _ in (*KIND_SUFFIXES, *COT_SUFFIXES):
            if stem.endswith(suffix) and len(stem) > len(suffix):
                stem, changed = stem[: -len(suffix)], True
                break
    return stem


def none_sibling(path: str | os.PathLike[str], paths: Sequence[str | os.PathLike[str]]
                 ) -> str | os.PathLike[str] | None:
    """Among ``paths``, the bare-answer (``none``) file of ``path``'s dataset: same folder,
    same stem once one CoT-level suffix is removed, correct responses. ``None`` for files
    of irrelevant or corrupted responses (they answer other questions or a wrong one)."""
    p = Path(path).resolve()
    labels = infer_labels(p)
    if labels.cot_level in (None, "none") or labels.response_kind != "correct":
        return None
    base = _without_cot_suffix(p.stem)
    for other in paths:
        q = Path(other).resolve()
        lab = infer_labels(q)
        if (q != p and q.parent == p.parent and lab.cot_level == "none"
                and lab.response_kind == "correct" and _without_cot_suffix(q.stem) == base):
            return other
    return None


def _without_cot_suffix(stem: str) -> str:
    for suffix, _ in COT_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def with_references(records: Sequence[Record], answers: Sequence[Record]) -> list[Record]:
    """``records`` with ``reference`` set from the record of ``answers`` at the same index
    whose prompt is the same (a differing prompt leaves that record without one)."""
    out = []
    for i, rec in enumerate(records):
        ans = answers[i] if i < len(answers) else None
        ok = ans is not None and ans.prompt == rec.prompt and ans.output.strip()
        out.append(dataclasses.replace(rec, reference=ans.output.strip()) if ok else rec)
    return out
