# SPDX-License-Identifier: MIT
"""Load any Hugging Face causal LM (or a gpt_mini checkpoint) and its tokenizer.

A model is named by one of:

* a local directory (``config.json`` + safetensors, or a gpt_mini checkpoint);
* a ``.gguf`` file (llama.cpp's quantised format): dequantised to fp32 once and cached as a
  safetensors directory keyed by the file's sha256 (``models/gguf.py``, ``models/cache.py``);
* a packaged name such as ``pkg:smollm2-135m-instruct`` (``models/packaged.py``): a GGUF
  installed from the package registry, cached the same way;
* a hub id, read with ``from_pretrained`` (from the local Hugging Face cache when offline).

Safetensors are preferred, and ``transformers`` reads legacy ``.bin`` files only with
``torch.load(weights_only=True)``; the model is put in eval mode (dropout off) on the
resolved device. Problems a user can fix (no such directory or file, no or truncated
weights, a hub id that cannot be reached, a missing package) are one-line
:class:`~thoughtgrad.errors.UserError` messages, raised here once for every caller.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch.nn as nn

from thoughtgrad.config import resolve_device, resolve_dtype
from thoughtgrad.errors import UserError
from thoughtgrad.models import cache, gguf, packaged

WEIGHT_PATTERNS: tuple[str, ...] = ("*.safetensors", "*.safetensors.index.json",
                                    "pytorch_model*.bin", "pytorch_model.bin.index.json")
"""Files that count as weights in a local model directory."""

HUB_TIMEOUT_S = 3.0
"""How long to wait for a TCP connection to the hub before calling it unreachable."""

_TRUE = ("1", "on", "yes", "true")


def _local_path(name_or_dir: str | Path) -> Path | None:
    """The local directory or file meant by ``name_or_dir``, or None for a hub id."""
    path = Path(name_or_dir).expanduser()
    if path.exists():
        return path
    text = str(name_or_dir)
    if gguf.is_gguf_path(text):
        raise UserError(f"model {text}: no such .gguf file")
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise UserError(f"model directory {text}: no such directory")
    return None


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_reachable() -> bool:
    """A TCP connection to the hub endpoint opens within :data:`HUB_TIMEOUT_S`.

    Behind an HTTP(S) proxy the hub is not contacted directly, so this says yes and leaves
    the verdict to ``huggingface_hub``.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port),
                                 timeout=HUB_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _check_hub(repo_id: str) -> None:
    """Fail fast, in one line, on a hub id that is neither cached locally nor reachable.

    (Left to ``transformers``, an unreachable hub costs a minute of retry warnings.)
    """
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo_id, "config.json")
    except (ValueError, OSError):  # not a valid repo id
        hit = None
    if isinstance(hit, str):
        return
    known = ", ".join(packaged.PREFIX + k for k in packaged.PACKAGED)
    hint = (f"give a local model directory, a .gguf file or a packaged model ({known}; "
            "see `thoughtgrad models`)")
    if _offline():
        raise UserError(f"model {repo_id}: no such local directory or file, and not in the "
                        f"Hugging Face cache while offline (HF_HUB_OFFLINE); {hint}")
    if not _hub_reachable():
        raise UserError(f"model {repo_id}: no such local directory or file, not in the "
                        f"Hugging Face cache, and the hub is unreachable; {hint}")


def resolve_model(name_or_dir: str | Path) -> str:
    """What ``from_pretrained`` should read for a model name: a local directory or a hub id.

    A ``.gguf`` file or ``pkg:`` name is dequantised into the cache on first use and its
    cache directory returned; a hub id is checked for reachability (see :func:`_check_hub`).
    """
    text = str(name_or_dir)
    if packaged.is_packaged(text):
        return str(packaged.prepare(packaged.lookup(text)))
    local = _local_path(name_or_dir)
    if local is None:
        _check_hub(text)
        return text
    if local.is_file():
        if gguf.is_gguf_path(local) or _starts_with_gguf_magic(local):
            return str(gguf.dequantised_dir(local))
        raise UserError(f"model {text}: not a directory or a .gguf file")
    return str(local)


def _starts_with_gguf_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == gguf.MAGIC
    except OSError:
        return False


def _model_type(directory: Path) -> str | None:
    cfg = directory / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"model directory {directory}: config.json is not valid JSON "
                        f"({exc})") from None


def _bad_weights(directory: Path) -> str | None:
    """The first safetensors file of ``directory`` whose header or size is wrong, with why."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            return f"{path.name} is truncated or corrupt ({str(exc).splitlines()[0]})"
    return None


def _load_error(what: str, name: object, local: Path | None, exc: BaseException) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if local is not None and local.is_dir():
        bad = _bad_weights(local)
        if bad is not None:
            return UserError(f"model directory {local}: {bad}")
    return UserError(f"{what} {name}: cannot load ({first})")


def _load_errors() -> tuple[type[BaseException], ...]:
    from safetensors import SafetensorError

    return (OSError, ValueError, KeyError, SafetensorError)


def load_model(name_or_dir: str | Path, *, dtype: str = "fp32", device: str = "auto",
               device_map: str | None = None, trust_remote_code: bool = False,
               attn_implementation: str = "eager") -> nn.Module:
    """A causal LM in eval mode on ``device``, weights in ``dtype`` (fp32, bf16, fp16, fp64).

    ``name_or_dir`` is any name of the module docstring. ``device_map`` (a
    ``--device-map`` value, :func:`~thoughtgrad.models.placement.parse_device_map`) places
    a Hugging Face model with accelerate instead, block by block over the GPUs (then CPU,
    disk), and ``device`` is not used; gpt_mini checkpoints take no device map.
    ``attn_implementation`` is ``eager`` (exact, any dtype) or ``sdpa``. Remote code runs
    only with ``trust_remote_code``.
    """
    from thoughtgrad.models.placement import parse_device_map

    torch_dtype = resolve_dtype(dtype)
    placement = parse_device_map(device_map)
    dev = resolve_device(device) if placement is None else None
    source = resolve_model(name_or_dir)
    local = Path(source) if Path(source).is_dir() else None
    if local is not None:
        if not (local / "config.json").is_file():
            raise UserError(f"model directory {local}: no config.json")
        if _model_type(local) == "gpt_mini":
            from thoughtgrad.models.gpt_mini import GPTMini

            if placement is not None:
                raise UserError(f"model {local}: a gpt_mini checkpoint takes --device, not "
                                "--device-map")
            return GPTMini.load(local, device=dev).to(torch_dtype).eval()
        if not any(next(local.glob(p), None) for p in WEIGHT_PATTERNS):
            raise UserError(f"model directory {local}: no weights (expected model.safetensors "
                            "or pytorch_model.bin)")
    from transformers import AutoModelForCausalLM

    placed = {} if placement is None else {"device_map": placement}
    if placement is not None:
        _check_accelerate()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation, **placed)
    except _load_errors() as exc:
        raise _load_error("model", name_or_dir, local, exc) from None
    return (model if dev is None else model.to(dev)).eval()


def _check_accelerate() -> None:
    """``--device-map`` is accelerate's big-model loading: say how to install it."""
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise UserError("--device-map needs the accelerate package: pip install -e '.[hf]'"
                        ) from None


def load_tokenizer(name_or_dir: str | Path, *, trust_remote_code: bool = False) -> Any:
    """The model's tokenizer; a missing pad token falls back to the EOS token.

    gpt_mini checkpoints have no Hugging Face tokenizer unless one was saved beside them
    (the toy lab uses the character tokenizer in ``thoughtgrad.tasks.toy``). A ``.gguf``
    file or ``pkg:`` name reads the tokenizer saved in its cache entry.
    """
    source = resolve_model(name_or_dir)
    local = Path(source) if Path(source).is_dir() else None
    try:
        if local is not None and _model_type(local) == "gpt_mini":
            if not (local / "tokenizer.json").is_file():
                raise UserError(f"model directory {local}: a gpt_mini checkpoint has no "
                                "tokenizer; use the toy character tokenizer "
                                "(thoughtgrad.tasks.toy)")
            from transformers import PreTrainedTokenizerFast

            tok = PreTrainedTokenizerFast.from_pretrained(source)
        else:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"tokenizer {name_or_dir}: cannot load ({first})") from None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def model_provenance(name_or_dir: str | Path) -> dict[str, Any]:
    """What a manifest should record about a model, without loading it.

    Always ``model`` (a local path resolved, else the name as given), ``source``
    (``directory``, ``gguf``, ``packaged`` or ``hub``) and ``display_name`` (what figures
    and tables call it: a dequantised GGUF says so, e.g. ``SmolLM2-135M-Instruct (Q4_1
    dequantised)``). A GGUF or packaged model adds ``gguf_file``, ``gguf_sha256``,
    ``quantization`` (the file's type, read with the ``gguf`` package), ``tensor_types``,
    ``cache_dir`` (when cached); a packaged one adds ``package`` (its pip command) and
    ``license``.
    """
    text = str(name_or_dir)
    if packaged.is_packaged(text):
        spec = packaged.lookup(text)
        out: dict[str, Any] = {"model": packaged.PREFIX + spec.name, "source": "packaged",
                               "display_name": spec.display_name, "package": spec.pip,
                               "license": spec.license, "gguf_file": spec.gguf_file,
                               "quantization": spec.quantization}
        entry = packaged.cached_entry(spec)
        if packaged.installed(spec):
            out["gguf_sha256"] = packaged.key(spec)
        if entry is not None:
            out.update(_entry_record(entry))
            out["display_name"] = spec.display_name
        return out
    local = _local_path(name_or_dir)
    if local is None:
        return {"model": text, "source": "hub", "display_name": text}
    if local.is_file():
        key = gguf.sha256_of(local)
        entry = cache.cached(key)
        record = _entry_record(entry) if entry is not None else None
        if record is None:
            info = gguf.read_info(local)
            record = {"gguf_file": info.gguf_file, "gguf_sha256": info.gguf_sha256,
                      "quantization": info.quantization, "tensor_types": info.tensor_types,
                      "display_name": info.display_name()}
        return {"model": str(local.resolve()), "source": "gguf", **record}
    out = {"model": str(local.resolve()), "source": "directory", "display_name": local.name}
    record = gguf.cached_provenance(local)
    if record is not None:  # a cache entry named by its path
        out.update({k: record[k] for k in ("gguf_file", "gguf_sha256", "quantization",
                                           "display_name") if k in record})
    return out


def _entry_record(entry: Path) -> dict[str, Any]:
    record = gguf.cached_provenance(entry) or {}
    keep = ("gguf_file", "gguf_sha256", "quantization", "tensor_types", "display_name")
    return {**{k: record[k] for k in keep if k in record}, "cache_dir": str(entry)}
