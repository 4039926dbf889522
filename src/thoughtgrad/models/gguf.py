# SPDX-License-Identifier: MIT
"""GGUF files: what they hold (provenance) and their dequantisation into a cached model.

A ``.gguf`` file (llama.cpp's format) holds quantised weights, the config and the
tokenizer. ``transformers`` reads it with the ``gguf`` package and dequantises every
weight to fp32 (slow: seconds to minutes on a CPU), so :func:`dequantised_dir` does it once
and keeps a plain safetensors model directory in the cache (``models/cache.py``), keyed by
the file's sha256. Those weights are the quantised values, not the released ones: every
name a figure or table shows says "Q4_1 dequantised" (or the file's own type).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from thoughtgrad.errors import UserError
from thoughtgrad.models import cache
from thoughtgrad.runs.store import file_sha256

log = logging.getLogger(__name__)

MAGIC = b"GGUF"
PROVENANCE_FILE = "provenance.json"
"""The cache entry's record of the GGUF it came from (:class:`GGUFInfo` as JSON)."""

UNQUANTISED = ("F32", "F16", "BF16", "F64")

CHECK_PROMPT = "Natalia sold clips to 48 of her friends in April. How many clips did she sell?"
"""A short prompt on which every new cache entry must reproduce the GGUF model's logits."""

CHECK_ATOL = 1e-4
"""Largest absolute logit difference allowed between the GGUF-loaded model and the saved
entry (both fp32 with the same weights: they agree to rounding, ~1e-6)."""


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file is: recorded in manifests and in its cache entry.

    ``quantization`` is the file type llama.cpp wrote (``general.file_type``, e.g. ``Q4_1``
    from ``MOSTLY_Q4_1``), else the commonest quantised tensor type; ``tensor_types`` counts
    tensors per storage type (a Q4_K_M file mixes Q4_K, Q6_K, Q5_0, Q8_0 and F32).
    """

    gguf_file: str
    gguf_sha256: str
    gguf_bytes: int
    quantization: str
    tensor_types: dict[str, int]
    architecture: str | None
    general_name: str | None
    license: str | None

    def display_name(self, base: str | None = None) -> str:
        """E.g. ``SmolLM2-135M-Instruct (Q4_1 dequantised)``."""
        name = base or self.general_name or Path(self.gguf_file).stem
        return f"{name} ({self.quantization} dequantised)"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, hashed once per process while its size and mtime stay
    (:func:`thoughtgrad.runs.store.file_sha256`, shared with the data-file hashes)."""
    return file_sha256(path)


def check_magic(path: Path) -> None:
    """A one-line error unless ``path`` is a readable file starting with the GGUF magic."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except IsADirectoryError:
        raise UserError(f"model {path}: a directory, not a .gguf file") from None
    except OSError as exc:
        raise UserError(f"model {path}: cannot read ({exc.strerror or exc})") from None
    if head != MAGIC:
        raise UserError(f"model {path}: not a GGUF file (it does not start with the GGUF "
                        "magic bytes)")


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        return field.contents()
    except (ValueError, IndexError, TypeError):
        return None


def read_info(path: str | Path) -> GGUFInfo:
    """The provenance of a GGUF file; a truncated or foreign file is a one-line error."""
    path = Path(path)
    check_magic(path)
    from gguf import GGUFReader, LlamaFileType

    size = path.stat().st_size
    try:
        reader = GGUFReader(str(path))
        end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    except (ValueError, IndexError, KeyError, OSError, OverflowError) as exc:
        raise UserError(f"model {path}: truncated or corrupt GGUF file ({size} bytes; "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                        ) from None
    if not reader.tensors:
        raise UserError(f"model {path}: GGUF file has no tensors")
    if end > size:
        raise UserError(f"model {path}: truncated GGUF file ({size} bytes, its tensors need "
                        f"{end})")
    types = Counter(t.tensor_type.name for t in reader.tensors)
    file_type = _field(reader, "general.file_type")
    try:
        quant = LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except (TypeError, ValueError):
        quantised = [(n, k) for k, n in types.items() if k not in UNQUANTISED]
        quant = max(quantised)[1] if quantised else max((n, k) for k, n in types.items())[1]
    return GGUFInfo(gguf_file=path.name, gguf_sha256=sha256_of(path), gguf_bytes=size,
                    quantization=quant, tensor_types=dict(sorted(types.items())),
                    architecture=_field(reader, "general.architecture"),
                    general_name=_field(reader, "general.name"),
                    license=_field(reader, "general.license"))


def load_gguf_model(path: Path) -> Any:
    """The model dequantised straight from the GGUF by ``transformers`` (fp32, eval).

    It cannot be saved with ``save_pretrained``; :func:`dequantised_dir` rebuilds it.
    """
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"model {path}: cannot dequantise this GGUF ({first})") from None
    return model.eval()


def _rebuilt(loaded: Any) -> Any:
    """A plain fp32 model of the same config holding ``loaded``'s weights (ties kept)."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(loaded.config)
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    state = loaded.state_dict()
    bad = [name for name, t in state.items() if t.is_floating_point() and
           not bool(torch.isfinite(t).all())]
    if bad:
        raise UserError(f"model {config.name_or_path}: dequantised weights are not finite in "
                        f"{len(bad)} tensors (first: {bad[0]})")
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise UserError(f"model {config.name_or_path}: dequantised weights do not fit the "
                        f"rebuilt model (missing {sorted(missing)[:3]}, unexpected "
                        f"{sorted(unexpected)[:3]})")
    model.tie_weights()
    return model.eval()


def _logits(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits.float()


def _build(path: Path, info: GGUFInfo, directory: Path, display: str | None) -> None:
    """Dequantise, save, reload the saved entry and check it gives the GGUF model's logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    log.warning("dequantising %s (%s) into the model cache; later loads read the cache",
                path.name, info.quantization)
    loaded = load_gguf_model(path)
    rebuilt = _rebuilt(loaded)
    rebuilt.save_pretrained(directory, safe_serialization=True)
    del rebuilt
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"model {path}: cannot read its tokenizer ({exc})") from None
    tokenizer.save_pretrained(directory)
    saved = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer(CHECK_PROMPT).input_ids])  # 1 T
    diff = float((_logits(loaded, ids) - _logits(saved, ids)).abs().max())
    if not diff <= CHECK_ATOL:
        raise UserError(f"model {path}: the dequantised copy does not reproduce the GGUF "
                        f"model's logits (max difference {diff:.3g} > {CHECK_ATOL})")
    record = {**asdict(info), "display_name": info.display_name(display),
              "dequantised_dtype": "float32", "tied_embeddings":
              bool(getattr(saved.config, "tie_word_embeddings", False)),
              "check_prompt_tokens": ids.shape[1], "check_max_logit_diff": diff,
              "seconds": round(time.perf_counter() - start, 1)}
    (directory / PROVENANCE_FILE).write_text(json.dumps(record, indent=1) + "\n")


def dequantised_dir(path: str | Path, *, sha256: str | None = None,
                    display: str | None = None) -> Path:
    """The cached safetensors directory of a GGUF file, dequantising it on first use.

    ``sha256`` (when the caller already knows it) skips hashing the file; ``display`` is
    the base of the display name recorded in ``provenance.json``.
    """
    path = Path(path).expanduser()
    check_magic(path)
    key = sha256 or sha256_of(path)
    hit = cache.cached(key)
    if hit is not None:
        return hit
    info = read_info(path)
    if info.gguf_sha256 != key:
        raise UserError(f"model {path}: sha256 {info.gguf_sha256} is not the expected {key}")
    return cache.build_entry(key, lambda d: _build(path, info, d, display))


def cached_provenance(entry: Path) -> dict[str, Any] | None:
    """The ``provenance.json`` of a cache entry, if readable."""
    try:
        return json.loads((entry / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_gguf_path(name: str | os.PathLike[str]) -> bool:
    """True for a name ending in ``.gguf`` (whether or not the file exists)."""
    return str(name).lower().endswith(".gguf")
