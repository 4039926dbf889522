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
character span in the response is found by :func:`answer_span` and mapped to the tokens
whose character offsets overlap it.

Overlong samples are truncated from the response end (the prompt is kept); a sample whose
prompt alone fills ``max_length`` cannot be measured and raises :class:`EncodeError`
(recorded as failed by the caller, never dropped silently).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from thoughtgrad.errors import UserError

IGNORE_INDEX = -100
"""Label of a position that carries no loss (Hugging Face convention)."""

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
"""The system turn of the paper's chat-template encoding."""

LOSS_SPANS = ("response", "answer")

WORD_MARKER = "\u2581"
"""SentencePiece's word-start marker; a text's first token starting with it when the text
does not start with a space means the tokenizer added a dummy prefix."""

ANSWER_PATTERNS: tuple[str, ...] = (
    r"[Tt]he final answer is:?[ \t]*(?:\n\s*)?(.+?)[ \t.]*$",
    r"^####[ \t]*(-?\$?[\d,./]+)[ \t]*$",
    r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}",
    r"(?:^|[.!?]\s+)(?:So|Therefore|Thus|Hence),? the (?:correct |final )?(?:answer|option|choice)"
    r" is:?[ \t]*(?:\n\s*)?(.+?)[ \t.]*$",
    r"^[ \t*#]*(?:Final |Correct )?Answer\**:?\**[ \t]*(?:\n\s*)?(.+?)[ \t.]*$",
)
"""Final-answer markers covering the shared data, tried in order; group 1 is the marked
text and the last match of the first pattern that matches wins (``####`` is gsm8k's own
format)."""

NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])"
                    r"|(?<![\w.,])\d+(?:\.\d+)?(?![\w]|[.,]\d)")
"""A plain decimal number (``40``, ``0.5``, ``1,200``) not glued to letters or digits."""

OPTION_LETTER = re.compile(r"\((?:\\text\{)?(?P<a>[A-E])\}?\)|\\text\{\((?P<b>[A-E])\)\}"
                           r"|\b(?:[Oo]ption|[Cc]hoice|[Aa]nswer)\s+\**(?P<c>[A-E])\b")
"""A multiple-choice option letter: ``(D)``, ``(\\text{C})``, ``\\text{(C)}``, ``option D``."""

SENTENCE_CHOICE = re.compile(r"\bSentence\s+[AB]\b")
"""The sense-making tasks' answers: ``Sentence A`` / ``Sentence B``."""

YES_NO = re.compile(r"\b(?:yes|no)\b", re.IGNORECASE)

AUXILIARY = (r"(?:is|are|was|were|do|does|did|can|could|would|will|should|must|has|have|had|"
             r"may|might)\b")
"""Verbs that open a yes/no question (``Did ...``; ``If you're pregnant, might you ...``)."""

WH_QUESTION = re.compile(r"\b(?:what|which|who|whom|whose|why|how)\b", re.IGNORECASE)
"""Words of a wh-question (``when``/``where`` also open leading clauses, so not here)."""

EMPHASIS = re.compile(r'\*\*"?(?P<ans>[^*"\n]{1,80}?)"?\*\*')
"""A short bold phrase (``**carpal tunnel syndrome**``): a free-text answer's usual mark."""


class EncodeError(ValueError):
    """A sample that cannot be encoded (prompt too long, no answer found); the reason is
    recorded in the ``spectra_failed`` table and the run goes on."""


@dataclass(frozen=True)
class EncodeConfig:
    """How records become token ids and labels.

    ``max_length`` bounds prompt + response tokens (``None``: no bound); ``answer_pattern``
    is a regex whose group 1 (else whole match; last match wins) is the answer, used with
    ``loss_span="answer"`` instead of :data:`ANSWER_PATTERNS`.
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


# -- answer span ----------------------------------------------------------------------
def answer_shapes(prompt: str | None, reference: str | None = None
                  ) -> tuple[re.Pattern[str] | None, ...]:
    """What a final answer to ``prompt`` looks like: regexes tried in order, ``None`` for
    free text (the marked text, else the last line).

    ``(A) ...`` options: the option letter, else one of the options' texts, else a number;
    ``- Sentence A/B`` options: ``Sentence A/B``; a yes/no question (options ``yes``/``no``,
    or :func:`_yes_no_question`): ``yes``/``no``; other
    ``- option`` lists: one of the option texts (longest first), else a bold phrase, else
    free text (an irrelevant response answers another question); a prompt with numbers: a
    number. The question is the last sentence of the prompt's first line. Without a
    prompt, the shape of ``reference`` when it is one of those; else free text.
    """
    text = (prompt or "").replace("\\n", "\n")
    listed = text.split("Options:", 1)[1] if "Options:" in text else ""
    options = [m.group(1).strip() for m in re.finditer(r"^[ \t]*-[ \t]+(.+?)[ \t]*$", listed,
                                                       re.MULTILINE)]
    lettered = [m.group(1).strip() for m in re.finditer(r"^[ \t]*\([A-E]\)[ \t]*(.+?)[ \t]*$",
                                                        text, re.MULTILINE)]
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip().split("\n", 1)[0].strip())
    question = sentences[-1] if sentences else ""
    if len(lettered) >= 2:
        return OPTION_LETTER, _one_of(lettered), NUMBER
    if options and all(o.startswith("Sentence") for o in options):
        return (SENTENCE_CHOICE,)
    if options and {o.lower() for o in options} <= {"yes", "no"}:
        return (YES_NO,)
    if options:
        return _one_of(options), EMPHASIS, None
    numbers = re.search(r"\d", text) is not None
    if prompt and _yes_no_question(question, numbers):
        return (YES_NO,)
    if prompt and numbers:
        return (NUMBER,)
    if prompt is None and reference is not None:
        typed = [r for r in (NUMBER, OPTION_LETTER, SENTENCE_CHOICE, YES_NO)
                 if r.fullmatch(reference.strip())]
        if typed:
            return (typed[0],)
    return (None,)


def describe_shape(regex: re.Pattern[str] | None) -> str:
    """A few words naming an answer shape, for messages."""
    names = {NUMBER: "a number", OPTION_LETTER: "an option letter", YES_NO: "yes or no",
             SENTENCE_CHOICE: "Sentence A/B", EMPHASIS: "a bold phrase", None: "a last line"}
    return names.get(regex, "one of the listed options")


def _yes_no_question(question: str, numbers: bool) -> bool:
    """Whether ``question`` asks yes or no: it opens with an auxiliary verb or ``Yes / no``;
    or, after a leading clause without a wh-word (``If you're pregnant,``, ``When en route
    ...,``), its next clause opens with one; or it has neither and no number."""
    first, *rest = question.split(",")
    if re.match(rf"\s*(?:yes\s*/\s*no\b|{AUXILIARY})", first, re.IGNORECASE):
        return True
    if re.match(rf"\s*{WH_QUESTION.pattern}", first, re.IGNORECASE) or WH_QUESTION.search(first):
        return False
    for clause in rest:
        if re.match(rf"\s*{AUXILIARY}", clause, re.IGNORECASE):
            return True
        if re.match(rf"\s*{WH_QUESTION.pattern}", clause, re.IGNORECASE):
            return False
    return question.endswith("?") and not numbers and not WH_QUESTION.search(question)


def _one_of(texts: Sequence[str]) -> re.Pattern[str]:
    alts = "|".join(re.escape(t) for t in sorted(set(texts), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


def _typed(regex: re.Pattern[str], text: str, start: int = 0, end: int | None = None
           ) -> list[tuple[int, int]]:
    """Spans of ``regex``'s matches inside ``text[start:end]``: its ``ans`` group when it
    has one; an option letter's span is ``(X)`` (or the bare letter after ``option``),
    without LaTeX around it."""
    out = []
    for m in regex.finditer(text, start, len(text) if end is None else end):
        if regex is OPTION_LETTER and not m.group("a"):
            a, b = m.span("b") if m.group("b") else m.span("c")
            out.append((a - 1, b + 1) if m.group("b") else (a, b))
        elif "ans" in regex.groupindex:
            out.append(m.span("ans"))
        else:
            out.append(m.span())
    return out


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _same(found: str, reference: str, prompt: str | None = None) -> bool:
    """Whether a found answer states ``reference``: numbers by value, option letters by
    letter or by the text of that option in ``prompt``, other text case-insensitively."""
    a, b = found.strip(), reference.strip()
    if NUMBER.fullmatch(a) and NUMBER.fullmatch(b):
        return _number(a) == _number(b)
    letter = OPTION_LETTER.fullmatch(b)
    if letter:
        want = next(g for g in letter.groups() if g)
        got = OPTION_LETTER.fullmatch(a) or (OPTION_LETTER.fullmatch(f"({a})") if len(a) == 1
                                             else None)
        if got:
            return next(g for g in got.groups() if g) == want
        option = re.search(rf"^[ \t]*\({want}\)[ \t]*(.+?)[ \t]*$",
                           (prompt or "").replace("\\n", "\n"), re.MULTILINE)
        return option is not None and _same(a, option.group(1))
    return a.casefold() == b.casefold()


def answer_span(text: str, pattern: str | None = None, *, prompt: str | None = None,
                reference: str | None = None) -> tuple[int, int] | None:
    """Character span ``[start, end)`` of the final answer in ``text``.

    With ``pattern``: its last match's group 1 (or the whole match when it has no group),
    ``None`` when it does not match. Otherwise, with the answer's shapes from
    :func:`answer_shapes` (given ``prompt``):

    1. ``reference`` (the bare answer of the same instruction, e.g. from the ``_no_cot``
       file): its last statement in ``text`` (numbers compared by value, option letters
       by letter or by the option's text);
    2. the first answer-shaped match inside the text marked by :data:`ANSWER_PATTERNS`
       (the last match of the first pattern that matches), then inside the last non-empty
       line (numbers not among the prompt's numbers first); for free-text answers (no
       shape) the marked text or the last line itself;
    3. the last answer-shaped match anywhere; ``None`` when there is none (a response
       that never states its answer has no answer tokens).

    Shapes are tried in order, each through steps 2-3. Surrounding whitespace and ``*``
    emphasis are excluded from the span.
    """
    if pattern is not None:
        for m in reversed(list(re.finditer(pattern, text, flags=re.MULTILINE))):
            g = 1 if m.re.groups >= 1 and m.group(1) is not None else 0
            span = _trim(text, m.start(g), m.end(g))
            if span is not None:
                return span
        return None
    shapes = answer_shapes(prompt, reference)
    if reference is not None and reference.strip():
        ref = reference.strip()
        same = [sp for regex in shapes for sp in _typed(regex or _one_of([ref]), text)
                if _same(text[sp[0]:sp[1]], ref, prompt)]
        if same:
            return max(same)
    regions = _regions(text)
    for regex in shapes:
        if regex is None:
            return regions[0] if regions else None
        for start, end in regions:
            found = _typed(regex, text, start, end)
            if regex is NUMBER:  # a restated quantity of the problem is not its answer
                given = {_number(m.group()) for m in NUMBER.finditer(prompt or "")}
                found = [sp for sp in found if _number(text[sp[0]:sp[1]]) not in given] or found
            if found:
                return found[0]
        found = _typed(regex, text)
        if found:
            return found[-1]
    return None


def _regions(text: str) -> list[tuple[int, int]]:
    """Where the final answer is looked for first: the marked text, then the last line."""
    out = []
    for pat in ANSWER_PATTERNS:
        matches = [m for m in re.finditer(pat, text, flags=re.MULTILINE)
                   if _trim(text, m.start(1), m.end(1)) is not None]
        if matches:
            out.append(_trim(text, matches[-1].start(1), matches[-1].end(1)))
            break
    lines = [m for m in re.finditer(r"[^\n]+", text) if m.group().strip()]
    if lines:
        out.append(_trim(text, lines[-1].start(), lines[-1].end()))
    return [s for s in out if s is not None]


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and (text[start] in " \t\n*" or text.startswith("- ", start)):
        start += 1
    while end > start and text[end - 1] in " \t\n*":
        end -= 1
    return (start, end) if end > start else None


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


def collate(samples: Sequence[Encoded], pad_id: int
            ) -> tuple[Int[Tensor, "B T"], Int[Tensor, "B T"], Int[Tensor, "B T"]]:
    """Right-padded ``(input_ids, labels, attention_mask)``; padded labels are ``-100``."""
    T = max(len(s) for s in samples)
    ids = torch.full((len(samples), T), pad_id, dtype=torch.long)  # B T
    labels = torch.full((len(samples), T), IGNORE_INDEX, dtype=torch.long)  # B T
    mask = torch.zeros((len(samples), T), dtype=torch.long)  # B T
    for b, s in enumerate(samples):
        n = len(s)
        ids[b, :n] = torch.tensor(s.input_ids)
        labels[b, :n] = torch.tensor(s.labels)
        mask[b, :n] = 1
    return ids, labels, mask
