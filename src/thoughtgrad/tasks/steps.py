# SPDX-License-Identifier: MIT
"""A step-by-step response split into its reasoning steps and its final-answer line.

:func:`split_steps` splits around the answer found by
:func:`~thoughtgrad.tasks.answers.answer_span`. A step is a sentence of a one-paragraph
rationale, a line of a line-per-step one, or, in a markdown (GPT-4o style) solution, a
numbered item or header section with all its bullets and equations; headers are never
steps on their own and an introduction before the first item is kept as a preamble. The
variant builders (:mod:`thoughtgrad.tasks.variants`) keep, drop or replace steps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from thoughtgrad.tasks.answers import answer_span

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")

HEADER_LINE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]|\d+\.[ \t]+\*\*[^*\n]+\*\*:?[ \t]*$"
                         r"|\*\*[^*\n]+\*\*:?[ \t]*$)")
"""A markdown header line: ``### Step 1``, ``1. **Convert units**:``, ``**Summary:**``."""

ITEM_START = re.compile(r"^(?:\d+\.[ \t]|#{1,6}[ \t]|\*\*Step\b)")
"""A top-level block that opens a reasoning step: a numbered item or a header."""

DISPLAY_MATH = ("\\[", "$$", "\\begin")


@dataclass(frozen=True)
class Steps:
    """A response split into reasoning steps and its final-answer line.

    ``sep`` rejoins the steps (``"\\n\\n"`` for blocks, ``"\\n"`` for lines, ``" "`` for
    sentences); ``preamble`` is the introduction before a markdown solution's first
    step (kept by every variant that keeps steps); ``answer`` is the bare answer inside
    ``answer_line``, ``""`` when the response never states one (``answer_line`` is then
    its last line).
    """

    steps: list[str]
    sep: str
    answer_line: str
    answer: str
    preamble: str = ""

    def join(self, steps: Sequence[str]) -> str:
        body = self.sep.join(steps)
        if self.preamble:
            body = f"{self.preamble}{self.sep}{body}" if body else self.preamble
        gap = "\n\n" if self.sep == "\n\n" else "\n"
        return f"{body}{gap}{self.answer_line}" if body else self.answer_line


def split_steps(response: str, prompt: str | None = None) -> Steps:
    """Split at the final answer (found with ``prompt``'s answer shape when given).

    The answer line starts at the answer's line, extended back over lead-in lines of its
    paragraph (``So, the answer is:``, ``\\[``, a header). The reasoning before it is split
    into markdown steps when it has several paragraphs (headers joined to the text they
    head, indented or display-math paragraphs joined to the step they belong to; with
    numbered items or sections, every paragraph up to the next one), else into lines,
    else into sentences.
    """
    span = answer_span(response, prompt=prompt)
    found = span is not None
    span = span or answer_span(response)  # no stated answer: split before the last line
    if span is None:
        raise ValueError("empty response")
    start = response.rfind("\n", 0, span[0]) + 1
    while start > 0:
        prev = response.rfind("\n", 0, start - 1) + 1
        if not _lead_in(response[prev:start - 1]):
            break
        start = prev
    body, answer_line = response[:start], response[start:].strip()
    answer = response[span[0]:span[1]] if found else ""
    blocks = _blocks(body)
    if len(blocks) > 1:
        items = [i for i, b in enumerate(blocks) if ITEM_START.match(b)]
        if not items:
            return Steps(blocks, "\n\n", answer_line, answer)
        # numbered items / sections: every paragraph up to the next item belongs to it
        steps = ["\n\n".join(blocks[a:b]) for a, b in zip(items, [*items[1:], len(blocks)],
                                                           strict=True)]
        return Steps(steps, "\n\n", answer_line, answer,
                     preamble="\n\n".join(blocks[:items[0]]))
    lines = [ln.rstrip() for ln in body.splitlines() if ln.strip()]
    if len(lines) > 1:
        return Steps(lines, "\n", answer_line, answer)
    sentences = SENTENCE_END.split(lines[0].strip()) if lines else []
    return Steps(sentences, " ", answer_line, answer)


def _lead_in(line: str) -> bool:
    """A line that introduces the answer below it: ends with a colon, opens display
    math, or is a header."""
    text = line.strip().strip("*#").strip()
    return text.endswith(":") or line.strip() in DISPLAY_MATH or bool(HEADER_LINE.match(line))


def _blocks(body: str) -> list[str]:
    """Paragraphs of a markdown solution grouped into steps (see :func:`split_steps`)."""
    out: list[str] = []
    header = ""
    for block in (b.strip("\n").rstrip() for b in re.split(r"\n[ \t]*\n", body)):
        if not block.strip():
            continue
        if out and not header and (block[0].isspace() or block.startswith(DISPLAY_MATH)):
            out[-1] += "\n\n" + block  # a step's indented body or its equation
            continue
        block = f"{header}\n\n{block}" if header else block
        header = ""
        if all(HEADER_LINE.match(ln) for ln in block.splitlines() if ln.strip()):
            header = block  # a header alone heads the next paragraph
            continue
        out.append(block)
    if header:
        out.append(header)
    return out
