# SPDX-License-Identifier: MIT
"""The samples of the training-dynamics study (:mod:`thoughtgrad.experiments.dynamics`).

Each sample is encoded twice with the same token ids: with the regime's labels (the
training loss) and with answer-only labels (the length control). ``toy:<task>`` data are
held-out problems of the toy lab for gpt_mini; anything else is an Alpaca-style JSON/JSONL
file (``tasks.records``) whose responses are turned into the regime's
(:func:`regime_response`, the ``tasks.variants`` builders) and encoded with
``tasks.encode``. Batches are drawn by step (:func:`thoughtgrad.train.sft.make_batches`),
so a resumed run and every regime see the same samples at the same step.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from thoughtgrad.errors import UserError
from thoughtgrad.tasks.encode import EncodeConfig, Encoded, EncodeError, encode
from thoughtgrad.tasks.tokens import IGNORE_INDEX, collate
from thoughtgrad.train.sft import Batch

TOY_STYLE = {"cot": "cot", "half": "half", "answer": "answer"}
"""The toy lab's response style of each regime."""


@dataclass(frozen=True)
class Example:
    """One sample's ids with the regime's labels and its answer-only labels."""

    sample_id: int
    full: Encoded
    answer: Encoded


def toy_examples(model_dir: str | Path, task_name: str, regime: str, *, seed: int,
                 limit: int | None = None) -> list[Example]:
    """Held-out toy problems as examples: the evaluation split of the checkpoint's study
    (problems the base model never trained on), train Ks only, in a seeded order."""
    from thoughtgrad.experiments.toy import ToyConfig, config_from_checkpoint, split_for
    from thoughtgrad.tasks.toy import encode_example, get_task, response

    task = get_task(task_name)
    try:
        cfg, _ = config_from_checkpoint(model_dir)
        cfg = dataclasses.replace(cfg, task=task_name)
    except UserError:
        cfg = ToyConfig(task=task_name, seed=seed)
    split = split_for(cfg)
    problems = [p for k in cfg.train_ks for p in split.eval.get(k, [])]
    random.Random(seed).shuffle(problems)
    problems = problems[:limit] if limit else problems
    style = TOY_STYLE[regime]
    out = []
    for i, p in enumerate(problems):
        resp = response(task, p, style, seed=seed)
        ids, labels = encode_example(p.prompt(), resp)
        n_ans = len(f"{task.answer(p)}#")
        answer_labels = [IGNORE_INDEX] * (len(labels) - n_ans) + labels[-n_ans:]
        n_prompt = len(p.prompt())
        out.append(Example(i, Encoded(ids, labels, n_prompt, False),
                           Encoded(ids, answer_labels, n_prompt, False)))
    return out


def regime_response(output: str, regime: str, *, seed: int, sample_id: int,
                    prompt: str | None = None) -> str:
    """The response a regime trains on (``half`` as ``variants`` ``half_steps``); with
    ``prompt`` its answer shape locates the final answer (as ``variants`` does)."""
    from thoughtgrad.tasks.variants import half_steps_response, none_response

    if regime == "cot":
        return output
    if regime == "half":
        return half_steps_response(output, random.Random(f"half_steps:{seed}:{sample_id}"),
                                   prompt)
    return none_response(output, prompt)


def file_examples(path: str | Path, tokenizer: Any, regime: str, *, seed: int,
                  limit: int | None = None, max_length: int | None = 512,
                  chat_template: bool = False) -> tuple[list[Example], list[dict[str, Any]]]:
    """Examples from an Alpaca-style file, and the samples that could not be encoded.

    A sample is kept only when its full response (the ``cot`` regime's, the longest: the
    ``half`` and ``answer`` responses are cut from it) fits ``max_length`` untruncated,
    whatever the regime, so every regime of a study trains on the same samples in the same
    order and draws the same problems at each step (otherwise ``half`` would keep the long
    problems ``cot`` loses to truncation, and the regimes would differ in their data)."""
    from thoughtgrad.tasks.records import infer_labels, load_records

    records = load_records(path, infer_labels(path), limit=limit)
    full_cfg = EncodeConfig(max_length=max_length, chat_template=chat_template)
    ans_cfg = dataclasses.replace(full_cfg, loss_span="answer")
    out, failed = [], []
    for r in records:
        try:
            resp = regime_response(r.output, regime, seed=seed, sample_id=r.sample_id,
                                   prompt=r.prompt)
            full = encode(tokenizer, r.prompt, resp, full_cfg)
            ans = encode(tokenizer, r.prompt, resp, ans_cfg)
            longest = full if resp == r.output else encode(tokenizer, r.prompt, r.output,
                                                           full_cfg)
            if longest.truncated:
                raise EncodeError(f"its full (cot) response does not fit max_length "
                                  f"{max_length}: left out of every regime")
        except (EncodeError, ValueError) as exc:
            failed.append({"sample_id": r.sample_id, "source": r.labels.source,
                           "reason": str(exc)})
            continue
        if ans.input_ids != full.input_ids:
            failed.append({"sample_id": r.sample_id, "source": r.labels.source,
                           "reason": "answer-only encoding changed the token ids"})
            continue
        out.append(Example(r.sample_id, full, ans))
    if not out:
        hint = ""
        if max_length is not None and failed and "max_length" in failed[0]["reason"]:
            need = [len(encode(tokenizer, r.prompt, r.output,
                               dataclasses.replace(full_cfg, max_length=None)))
                    for r in records]
            hint = (f"; with their full responses these {len(need)} samples take {min(need)}-"
                    f"{max(need)} tokens: raise --max-length to at least {min(need)}")
        raise UserError(f"{path}: no sample could be encoded (first reason: "
                        f"{failed[0]['reason'] if failed else 'none'}){hint}")
    return out, failed


def probe_batches(examples: Sequence[Example], n: int, pad_id: int) -> tuple[Batch, Batch]:
    """The fixed probe batch (the first ``n`` examples) with full and answer-only labels."""
    chosen = list(examples[:n])
    ids, labels, mask = collate([e.full for e in chosen], pad_id)
    _, a_labels, _ = collate([e.answer for e in chosen], pad_id)
    return Batch(ids, labels, mask), Batch(ids, a_labels, mask)


def is_toy(model: nn.Module) -> bool:
    """Whether ``model`` is a gpt_mini (toy lab) model."""
    return getattr(getattr(model, "config", None), "model_type", None) == "gpt_mini"


def load_examples(model: nn.Module, model_path: str, data: str, regime: str, *, seed: int = 0,
                  limit: int | None = None, max_length: int | None = 512,
                  chat_template: bool = False
                  ) -> tuple[list[Example], int, list[dict[str, Any]]]:
    """Examples of ``data`` (``toy:<task>`` or a file) under ``regime`` for ``model``; the
    pad id; the samples that could not be encoded."""
    if data.startswith("toy:"):
        if not is_toy(model):
            raise UserError(f"--data {data}: toy data needs a gpt_mini checkpoint, "
                            f"{model_path} is not one")
        from thoughtgrad.tasks.toy import TOKENIZER

        examples = toy_examples(model_path, data[4:], regime, seed=seed, limit=limit)
        longest = max(len(e.full) for e in examples)
        if longest > model.config.block_size:
            raise UserError(f"toy texts of {longest} tokens exceed the checkpoint's block_size "
                            f"{model.config.block_size}")
        return examples, TOKENIZER.pad_id, []
    from thoughtgrad.models.hf import load_tokenizer

    tok = load_tokenizer(model_path)
    examples, failed = file_examples(data, tok, regime, seed=seed, limit=limit,
                                     max_length=max_length, chat_template=chat_template)
    return examples, tok.pad_token_id if tok.pad_token_id is not None else 0, failed
