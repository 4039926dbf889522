# SPDX-License-Identifier: MIT
"""Where the final answer is in a response: its shapes and its character span.

What an answer to a prompt looks like (:func:`answer_shapes`: an option letter, one of the
listed options, ``Sentence A/B``, yes/no, a number, or free text) and where the response
states it (:func:`answer_span`: the reference answer's last statement, else the first
answer-shaped text inside the marked final answer or the last line, else the last
answer-shaped text anywhere). Used by ``loss_span="answer"`` encoding
(:mod:`thoughtgrad.tasks.encode`) and by the variant builders
(:mod:`thoughtgrad.tasks.variants`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
