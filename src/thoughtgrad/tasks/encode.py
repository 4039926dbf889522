# SPDX-License-Identifier: MIT
"""Token ids and loss labels for prompt/response records, and token-budget batches.

The text is joined exactly as in the Layer_Gradient paper:

* base model: ``prompt + "\\n"`` then ``output``, where ``prompt`` is ``instruction`` plus
  ``"\\n" + input`` when ``input`` is non-empty;
* instruct model (``chat_template``): the tokenizer's chat template rendered with a system
  turn (``"You are a helpful assistant."`` unless given) and a user turn holding the
  prompt, generation prompt added, then ``output``.

The prompt/response boundary is exact: prompt and response are tokenized separately
(prompt with the tokenizer's special tokens such as BOS; response without) and the ids
concatenated, so the labels cover exactly the response's tokens even where a BPE merge
would have crossed the boundary in the joined text. Labels are ``-100`` on the prompt.

With ``loss_span="answer"`` only the final answer's tokens carry loss: the answer's
character span in the response is found by :func:`thoughtgrad.tasks.answers.answer_span`
and mapped to the tokens whose character offsets overlap it.

Overlong samples are truncated from the response end (the prompt is kept); a sample whose
prompt alone fills ``max_length`` cannot be measured and raises :class:`EncodeError`
(recorded as failed by the caller, never dropped silently).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from thoughtgrad.errors import UserError
from thoughtgrad.tasks.answers import answer_shapes, answer_span, describe_shape
from thoughtgrad.tasks.tokens import IGNORE_INDEX

"""Label of a position that carries no loss (Hugging Face convention)."""

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
"""The system turn of the paper's chat-template encoding."""

LOSS_SPANS = ("response", "answer")

WORD_MARKER = "\u2581"
"""SentencePiece's word-start marker; a text's first token starting with it when the text
does not start with a space means the tokenizer added a dummy prefix."""


class EncodeError(ValueError):
    """A sample that cannot be encoded (prompt too long, no answer found); the reason is
    recorded in the ``spectra_failed`` table and the run goes on."""


@dataclass(frozen=True)
class EncodeConfig:
    """How records become token ids and labels.

    ``max_length`` bounds prompt + response tokens (``None``: no bound); ``answer_pattern``
    is a regex whose group 1 (else whole match; last match wins) is the answer, used with
    ``loss_span="answer"`` instead of :data:`~thoughtgrad.tasks.answers.ANSWER_PATTERNS`.
    """

    max_length: int | None = None
    chat_template: bool = False
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    loss_span: str = "response"
    answer_pattern: str | None = None

    def __post_init__(self) -> None:
        if self.loss_span not in LOSS_SPANS:
            raise UserError(f"loss_span must be one of {', '.join(LOSS_SPANS)}, "
                            f"got {self.loss_span!r}")
        if self.max_length is not None and self.max_length < 2:
            raise UserError(f"max_length must be >= 2, got {self.max_length}")
        if self.answer_pattern is not None:
            try:
                re.compile(self.answer_pattern)
            except re.error as exc:
                raise UserError(f"--answer-pattern {self.answer_pattern!r}: invalid regex "
                                f"({exc})") from None


@dataclass(frozen=True)
class Encoded:
    """One sample's ids and labels (``-100`` where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]
    n_prompt: int
    truncated: bool

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


# -- encoding -------------------------------------------------------------------------
def prompt_text(tokenizer: Any, prompt: str, cfg: EncodeConfig) -> str:
    """The text before the response: ``prompt + "\\n"``, or the rendered chat template."""
    if not cfg.chat_template:
        return prompt + "\n"
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
        raise UserError(f"{name}: --chat-template given but the tokenizer has no chat "
                        f"template (use a base-model encoding without --chat-template)")
    messages = [{"role": "system", "content": cfg.system_prompt},
                {"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _ids_offsets(tokenizer: Any, text: str, *, special: bool) -> tuple[list[int], list | None]:
    try:
        enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
        enc = tokenizer(text, add_special_tokens=special)
        return list(enc["input_ids"]), None


def response_ids(tokenizer: Any, response: str) -> tuple[list[int], list | None]:
    """Ids (and character offsets when the tokenizer gives them) of the response alone.

    Tokenizers that prepend a word marker to any text they start (SentencePiece's dummy
    prefix) would add a space the joined text does not have; for them the response is
    tokenized after a ``"\\n"`` anchor and the anchor's tokens are dropped.
    """
    ids, offsets = _ids_offsets(tokenizer, response, special=False)
    first = tokenizer.convert_ids_to_tokens(ids[:1])
    if response[:1].isspace() or not first or not str(first[0]).startswith(WORD_MARKER):
        return ids, offsets
    anchor = "\n"
    a_ids, _ = _ids_offsets(tokenizer, anchor, special=False)
    j_ids, j_off = _ids_offsets(tokenizer, anchor + response, special=False)
    if j_ids[: len(a_ids)] != a_ids:
        return ids, offsets
    shifted = None
    if j_off is not None:
        shifted = [(max(a - len(anchor), 0), max(b - len(anchor), 0))
                   for a, b in j_off[len(a_ids):]]
    return j_ids[len(a_ids):], shifted


def _answer_token_mask(tokenizer: Any, response: str, ids: list[int], offsets: list | None,
                       span: tuple[int, int]) -> list[bool]:
    """Which response tokens overlap the answer's character span."""
    a, b = span
    if offsets is None:
        # No offsets: tokenize the pieces before and through the answer.
        n_before = len(response_ids(tokenizer, response[:a])[0]) if a > 0 else 0
        n_through = len(response_ids(tokenizer, response[:b])[0])
        return [n_before <= i < max(n_through, n_before + 1) for i in range(len(ids))]
    return [(s < b and e > a) for s, e in offsets]


def encode(tokenizer: Any, prompt: str, response: str, cfg: EncodeConfig, *,
           reference: str | None = None) -> Encoded:
    """Ids and labels of one sample (see the module docstring for the exact joining).

    ``reference`` is the bare answer of the same instruction (the ``_no_cot`` response),
    which locates the answer in a long response for ``loss_span="answer"``.
    """
    p_ids, _ = _ids_offsets(tokenizer, prompt_text(tokenizer, prompt, cfg),
                            special=not cfg.chat_template)
    r_ids, r_off = response_ids(tokenizer, response)
    if not r_ids:
        raise EncodeError("the response has no tokens")
    carries = [True] * len(r_ids)
    if cfg.loss_span == "answer":
        span = answer_span(response, cfg.answer_pattern, prompt=prompt,
                           reference=reference)
        if span is None:
            what = (f"--answer-pattern {cfg.answer_pattern!r} did not match"
                    if cfg.answer_pattern else "it never states " + " or ".join(
                        describe_shape(r) for r in answer_shapes(prompt, reference)))
            raise EncodeError(f"no final answer found in the response ({what})")
        carries = _answer_token_mask(tokenizer, response, r_ids, r_off, span)
    truncated = False
    if cfg.max_length is not None and len(p_ids) + len(r_ids) > cfg.max_length:
        room = cfg.max_length - len(p_ids)
        if room < 1:
            raise EncodeError(f"the prompt alone has {len(p_ids)} tokens; max_length "
                              f"{cfg.max_length} leaves no room for the response")
        r_ids, carries, truncated = r_ids[:room], carries[:room], True
        if not any(carries):
            raise EncodeError(f"truncation to max_length {cfg.max_length} removed every "
                              f"loss-carrying token (the answer)")
    labels = [IGNORE_INDEX] * len(p_ids) + [t if c else IGNORE_INDEX
                                            for t, c in zip(r_ids, carries, strict=True)]
    return Encoded(p_ids + r_ids, labels, len(p_ids), truncated)


# -- batching -------------------------------------------------------------------------
def token_batches(lengths: Sequence[int], batch_tokens: int, *, chunk: int = 256
                  ) -> list[list[int]]:
    """Group sample indices into batches of at most ``batch_tokens`` padded tokens.

    A batch's cost is its size times its longest sample (right padding). Samples are taken
    in chunks of ``chunk`` in input order and sorted by length within a chunk (longest
    first) to minimise padding; a sample longer than the budget gets a batch of its own.
    Every index appears in exactly one batch.
    """
    if batch_tokens < 1:
        raise UserError(f"batch_tokens must be >= 1, got {batch_tokens}")
    batches: list[list[int]] = []
    for lo in range(0, len(lengths), chunk):
        order = sorted(range(lo, min(lo + chunk, len(lengths))), key=lambda i: -lengths[i])
        current: list[int] = []
        for i in order:
            longest = lengths[current[0]] if current else lengths[i]
            if current and (len(current) + 1) * longest > batch_tokens:
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
    return batches
