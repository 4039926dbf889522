# SPDX-License-Identifier: MIT
"""Load any Hugging Face causal LM (or a gpt_mini checkpoint) and its tokenizer.

``load_model`` reads a local directory or a hub id with ``from_pretrained``: safetensors
are preferred, and ``transformers`` reads legacy ``.bin`` files only with
``torch.load(weights_only=True)``; the model is put in eval mode (dropout off) on the
resolved device. A directory whose ``config.json`` says ``model_type: gpt_mini`` is loaded
with :meth:`thoughtgrad.models.gpt_mini.GPTMini.load`. Problems a user can fix (no such
directory, no weights, a hub id that cannot be reached) are one-line
:class:`~thoughtgrad.errors.UserError` messages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.nn as nn

from thoughtgrad.config import resolve_device, resolve_dtype
from thoughtgrad.errors import UserError

WEIGHT_PATTERNS: tuple[str, ...] = ("*.safetensors", "*.safetensors.index.json",
                                    "pytorch_model*.bin", "pytorch_model.bin.index.json")
"""Files that count as weights in a local model directory."""


def _local_dir(name_or_dir: str | Path) -> Path | None:
    """The local directory meant by ``name_or_dir``, or None for a hub id."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    text = str(name_or_dir)
    if path.exists():
        raise UserError(f"model {text}: not a directory")
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise UserError(f"model directory {text}: no such directory")
    return None


def _model_type(directory: Path) -> str | None:
    cfg = directory / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"model directory {directory}: config.json is not valid JSON "
                        f"({exc})") from None


def load_model(name_or_dir: str | Path, *, dtype: str = "fp32", device: str = "auto",
               trust_remote_code: bool = False, attn_implementation: str = "eager") -> nn.Module:
    """A causal LM in eval mode on ``device``, weights in ``dtype`` (fp32, bf16, fp16, fp64).

    ``attn_implementation`` is ``eager`` (exact, any dtype) or ``sdpa``. Remote code runs
    only with ``trust_remote_code``.
    """
    torch_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    local = _local_dir(name_or_dir)
    if local is not None:
        if not (local / "config.json").is_file():
            raise UserError(f"model directory {local}: no config.json")
        if _model_type(local) == "gpt_mini":
            from thoughtgrad.models.gpt_mini import GPTMini

            return GPTMini.load(local, device=dev).to(torch_dtype).eval()
        if not any(next(local.glob(p), None) for p in WEIGHT_PATTERNS):
            raise UserError(f"model directory {local}: no weights (expected model.safetensors "
                            "or pytorch_model.bin)")
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(local if local is not None else name_or_dir), dtype=torch_dtype,
            trust_remote_code=trust_remote_code, attn_implementation=attn_implementation)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"model {name_or_dir}: cannot load ({first})") from None
    return model.to(dev).eval()


def load_tokenizer(name_or_dir: str | Path, *, trust_remote_code: bool = False) -> Any:
    """The model's tokenizer; a missing pad token falls back to the EOS token.

    gpt_mini checkpoints have no Hugging Face tokenizer unless one was saved beside them
    (the toy lab uses the character tokenizer in ``thoughtgrad.tasks.toy``).
    """
    local = _local_dir(name_or_dir)
    try:
        if local is not None and _model_type(local) == "gpt_mini":
            if not (local / "tokenizer.json").is_file():
                raise UserError(f"model directory {local}: a gpt_mini checkpoint has no "
                                "tokenizer; use the toy character tokenizer "
                                "(thoughtgrad.tasks.toy)")
            from transformers import PreTrainedTokenizerFast

            tok = PreTrainedTokenizerFast.from_pretrained(str(local))
        else:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(local if local is not None else name_or_dir),
                                                trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"tokenizer {name_or_dir}: cannot load ({first})") from None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok
