# SPDX-License-Identifier: MIT
"""Response variants of step-by-step records: the paper's conditions and two controls.

A step-by-step response is split by :func:`split_steps` into its reasoning steps and its
final-answer line (around the answer found by
:func:`~thoughtgrad.tasks.encode.answer_span`). A step is a sentence of a one-paragraph
rationale, a line of a line-per-step one, or, in a markdown (GPT-4o style) solution, a
numbered item or header section with all its bullets and equations; headers are never
steps on their own and an introduction before the first item is kept as a preamble. From it:

==============  ========================================================================
``none``        the bare final answer (fast thinking, the paper's None CoT)
``simplified``  every other step (the 1st, 3rd, ...) and the answer line
``detailed``    the response unchanged: all steps and the answer line
``half_steps``  a seeded random half of the steps removed per sample, order and answer
                line kept (the "Direct" regime of the Gradient-of-Thought seed)
``irrelevant``  responses permuted across instructions by a seeded derangement (no
                record keeps its own response): the paper's construction
``corrupted``   the response keeps its own problem's numbers, but one equation's result
                is changed and the change carried through: every later equation that
                uses it is recomputed, and so on, up to the final answer (see
                :func:`corrupt_response`): wrong for reasoning reasons, not because it
                answers another problem
==============  ========================================================================

Variants keep every other field of a record and the record order, so the same
instructions line up across variant files.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtgrad.errors import UserError
from thoughtgrad.tasks.encode import NUMBER, OPTION_LETTER, answer_span

KINDS: tuple[str, ...] = ("none", "simplified", "detailed", "half_steps", "irrelevant",
                          "corrupted")

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")

HEADER_LINE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]|\d+\.[ \t]+\*\*[^*\n]+\*\*:?[ \t]*$"
                         r"|\*\*[^*\n]+\*\*:?[ \t]*$)")
"""A markdown header line: ``### Step 1``, ``1. **Convert units**:``, ``**Summary:**``."""

ITEM_START = re.compile(r"^(?:\d+\.[ \t]|#{1,6}[ \t]|\*\*Step\b)")
"""A top-level block that opens a reasoning step: a numbered item or a header."""

DISPLAY_MATH = ("\\[", "$$", "\\begin")

MAX_DELTA = 9
"""A corrupted result is shifted by a seeded integer in ``1..MAX_DELTA``."""


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


# -- the six builders -------------------------------------------------------------------
def none_response(response: str, prompt: str | None = None) -> str:
    """The bare final answer (an option letter as ``(X)``); ``ValueError`` when the
    response never states one."""
    answer = split_steps(response, prompt).answer
    if not answer:
        raise ValueError("the response never states its final answer")
    letter = OPTION_LETTER.fullmatch(answer) or OPTION_LETTER.fullmatch(f"option {answer}")
    return f"({next(g for g in letter.groups() if g)})" if letter else answer


def simplified_response(response: str, prompt: str | None = None) -> str:
    s = split_steps(response, prompt)
    return s.join(s.steps[::2])


def half_steps_response(response: str, rng: random.Random, prompt: str | None = None) -> str:
    """Remove ``floor(n / 2)`` of the ``n`` steps, chosen uniformly by ``rng``."""
    s = split_steps(response, prompt)
    n = len(s.steps)
    drop = set(rng.sample(range(n), n // 2))
    return s.join([st for i, st in enumerate(s.steps) if i not in drop])


def derangement(n: int, rng: random.Random) -> list[int]:
    """A uniformly random permutation of ``range(n)`` with no fixed point (rejection
    sampling: a uniform permutation is a derangement with probability about 1/e)."""
    if n < 2:
        raise UserError(f"irrelevant responses need at least 2 records, got {n}")
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(p != i for i, p in enumerate(perm)):
            return perm


# -- corrupted: equations, recomputed ----------------------------------------------------
FRAC_PART = r"\s*(?:\\?\$)?\s*(?P<{}>\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?)\s*" \
    r"(?:\\text\{{[^{{}}]*\}}\s*)?"
MATH_TOKEN = re.compile(
    r"(?P<frac>\\frac\{" + FRAC_PART.format("fa") + r"\}\{" + FRAC_PART.format("fb") + r"\})"
    r"|(?P<num>(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w,])\d*\.?\d+(?![\w]|[.,]\d))"
    r"|(?P<per>/[ \t]*[A-Za-z]+(?=[ \t]*(?:[-+*/×÷=]|\\times)))"
    r"|(?P<unit>(?<=\d[ \t])[A-Za-z]+(?=[ \t]*(?:[-+*/×÷=]|\\times)))"
    r"|(?P<op>\\times|\\cdot|\\div|[-+*/×÷]|(?<=\s)x(?=\s))"
    r"|(?P<lp>\\left\(|\()|(?P<rp>\\right\)|\))|(?P<eq>=)"
    r"|(?P<skip>\\text\{[^{}]*\}|\\[()\[\],]|\\\$|\$|[ \t]+)")
"""One token of an arithmetic run: a number, ``\\frac{a}{b}``, an operator, a parenthesis,
``=``, or something skipped inside math: units (``\\text{}``, a word between a number and
an operator, a rate's ``/ pound``), ``$``, LaTeX delimiters."""

PY_OP = {"\\times": "*", "\\cdot": "*", "×": "*", "x": "*", "\\div": "/", "÷": "/"}


@dataclass(frozen=True)
class Equation:
    """``expr = ... = result`` in a response: ``operands`` are the character spans of the
    numbers its expressions use (``{i}`` in each of ``exprs``), ``result`` the span of
    the number after the last ``=``."""

    operands: tuple[tuple[int, int], ...]
    exprs: tuple[str, ...]
    result: tuple[int, int]


def equations(text: str) -> list[Equation]:
    """Every checked equation of ``text`` in order: a run of arithmetic tokens with at
    least one expression (an operator) whose value is the number after its last ``=``
    (to the result's own rounding); unit conversions and prose are left out."""
    out, run, pos = [], [], 0
    while pos <= len(text):
        m = MATH_TOKEN.match(text, pos) if pos < len(text) else None
        if m is None or m.end() == pos:
            out += _run_equations(text, run)
            run, pos = [], pos + 1
            continue
        if m.lastgroup not in ("skip", "per", "unit", "fa", "fb"):
            run.append(m)
        pos = m.end()
    return out


def _run_equations(text: str, run: list[re.Match[str]]) -> list[Equation]:
    segments: list[list[re.Match[str]]] = [[]]
    for tok in run:
        if tok.lastgroup == "eq":
            segments.append([])
        else:
            segments[-1].append(tok)
    last = segments[-1]
    if len(segments) < 2 or len(last) < 1 or last[0].lastgroup != "num":
        return []
    result = last[0]
    operands: list[tuple[int, int]] = []
    exprs = []
    while segments[0] and segments[0][0].lastgroup == "op":
        segments[0].pop(0)  # a bullet's dash, not a minus
    for seg in segments[:-1]:
        if not any(t.lastgroup in ("op", "frac") for t in seg):
            continue
        parts = []
        for t in seg:
            kind = t.lastgroup
            if kind == "num":
                parts.append(f"{{{len(operands)}}}")
                operands.append(t.span())
            elif kind == "frac":
                parts.append(f"({{{len(operands)}}})/({{{len(operands) + 1}}})")
                operands += [t.span("fa"), t.span("fb")]
            elif kind == "op":
                parts.append(PY_OP.get(t.group(), t.group()))
            else:
                parts.append("(" if kind == "lp" else ")")
        exprs.append("".join(parts))
    values = [_value(text[a:b]) for a, b in operands]
    target = _value(result.group())
    if not exprs or not all(_close(_evaluate(e, values), target, result.group())
                            for e in exprs):
        return []
    return [Equation(tuple(operands), tuple(exprs), result.span())]


def _evaluate(expr: str, values: Sequence[float]) -> float | None:
    """The value of an arithmetic ``expr`` (``{i}`` placeholders, + - * / and parentheses
    only), ``None`` when it is not one."""
    import ast
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv}

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        raise ValueError("not arithmetic")

    try:
        return walk(ast.parse(expr.format(*(repr(v) for v in values)), mode="eval").body)
    except (ValueError, SyntaxError, ZeroDivisionError, IndexError, KeyError):
        return None


def _close(value: float | None, target: float, like: str) -> bool:
    if value is None:
        return False
    decimals = len(like.split(".")[1]) if "." in like else 0
    return abs(value - target) <= max(0.5 * 10 ** -decimals, 1e-9 * abs(target)) + 1e-9


def _value(token: str) -> float:
    return float(token.replace(",", ""))


def _format(value: float, like: str) -> str:
    """``value`` written like ``like`` (its decimals and thousands commas); a value that
    is not whole where ``like`` is gets up to two decimals."""
    decimals = len(like.split(".")[1]) if "." in like else 0
    if decimals == 0 and abs(value - round(value)) > 1e-9:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    text = f"{value:,.{decimals}f}" if "," in like else f"{value:.{decimals}f}"
    return text if not like.startswith(".") else text.lstrip("0")


def corrupt_response(prompt: str, response: str, rng: random.Random) -> str | None:
    """Change one equation's result and carry the change through; ``None`` when impossible.

    The changed result is an equation's (:func:`equations`) whose value is not one of the
    problem's numbers, shifted by a seeded ``1..MAX_DELTA``. Every later equation that
    uses a changed value is recomputed (its operands substituted, its result set to the
    new value), and a changed result changes in turn; later plain mentions of a changed
    value change with it, and so does the final answer. Candidates are tried in a seeded
    order (results that no other equation shares first) until one reaches the answer.
    The changed result is never one of the problem's numbers, and nothing before the
    changed step is touched.
    ``None`` when no equation's change reaches the answer (no equation, or none that the
    answer depends on, or whose change would make a result negative).
    """
    problem = {_value(m.group()) for m in NUMBER.finditer(prompt)}
    span = answer_span(response, prompt=prompt)
    if span is None or not NUMBER.search(response, span[0], span[1]):
        return None
    eqs = equations(response)
    results = [_value(response[slice(*e.result)]) for e in eqs]
    candidates = [i for i, v in enumerate(results) if v not in problem]
    rng.shuffle(candidates)  # a result no other equation shares is unambiguous: first
    candidates.sort(key=lambda i: results.count(results[i]) > 1)
    delta = rng.randint(1, MAX_DELTA)
    for i in candidates:
        edits = _propagate(response, eqs, i, delta, span)
        if edits is not None:
            return _apply(response, edits)
    return None


def _propagate(text: str, eqs: Sequence[Equation], first: int, delta: int,
               answer: tuple[int, int]) -> dict[int, tuple[int, str]] | None:
    """Edits ``{start: (end, new text)}`` changing equation ``first``'s result by ``delta``
    and everything computed from it after; ``None`` when the final answer is unchanged."""
    start, end = eqs[first].result
    old = _value(text[start:end])
    changed = {old: old + delta}
    edits = {start: (end, _format(old + delta, text[start:end]))}
    in_equation = {sp for e in eqs for sp in (*e.operands, e.result)}
    for e in eqs[first + 1:]:
        values = [_value(text[a:b]) for a, b in e.operands]
        new_values = [changed.get(v, v) for v in values]
        if new_values == values:
            continue
        for (a, b), v, nv in zip(e.operands, values, new_values, strict=True):
            if nv != v:
                edits[a] = (b, _format(nv, text[a:b]))
        result = _evaluate(e.exprs[0], new_values)
        a, b = e.result
        if result is not None and result < 0 <= _value(text[a:b]):
            return None  # a count or price gone negative reads as nonsense, not an error
        if result is not None and not _close(result, _value(text[a:b]), text[a:b]):
            changed[_value(text[a:b])] = result
            edits[a] = (b, _format(result, text[a:b]))
    for m in NUMBER.finditer(text, end):  # later plain mentions, and the answer
        if m.span() not in in_equation and _value(m.group()) in changed:
            edits.setdefault(m.start(), (m.end(), _format(changed[_value(m.group())],
                                                          m.group())))
    if not any(answer[0] <= s < answer[1] for s in edits):
        return None
    return edits


def _apply(text: str, edits: dict[int, tuple[int, str]]) -> str:
    out, pos = [], 0
    for s in sorted(edits):
        end, new = edits[s]
        out += [text[pos:s], new]
        pos = end
    out.append(text[pos:])
    return "".join(out)


@dataclass(frozen=True)
class VariantResult:
    """Variant rows (same fields as the input) and the indices of records left out."""

    rows: list[dict[str, Any]]
    skipped: list[int]


def build_variant(rows: Sequence[dict[str, Any]], kind: str, *, seed: int = 0,
                  prompt_field: str = "instruction", response_field: str = "output"
                  ) -> VariantResult:
    """Rows of one variant ``kind``; other fields are copied unchanged.

    ``corrupted`` leaves out (and lists in ``skipped``) records whose answer no equation
    change reaches, ``none`` records whose response never states its answer; every other
    kind keeps every record. Randomness depends on ``seed`` and the record
    index only.
    """
    kind = kind.replace("-", "_")
    if kind not in KINDS:
        raise UserError(f"unknown variant kind {kind!r}; choose one of {', '.join(KINDS)}")
    responses = [str(r[response_field]) for r in rows]
    out: list[dict[str, Any]] = []
    skipped: list[int] = []
    if kind == "irrelevant":
        perm = derangement(len(rows), random.Random(f"irrelevant:{seed}"))
        return VariantResult([{**r, response_field: responses[perm[i]]}
                              for i, r in enumerate(rows)], [])
    for i, (row, resp) in enumerate(zip(rows, responses, strict=True)):
        rng = random.Random(f"{kind}:{seed}:{i}")
        prompt = str(row.get(prompt_field, "") or "")
        if row.get("input"):
            prompt += "\n" + str(row["input"])
        if kind == "none":
            try:
                new = none_response(resp, prompt)
            except ValueError:
                skipped.append(i)
                continue
        elif kind == "simplified":
            new = simplified_response(resp, prompt)
        elif kind == "detailed":
            new = resp
        elif kind == "half_steps":
            new = half_steps_response(resp, rng, prompt)
        else:
            new = corrupt_response(prompt, resp, rng)
            if new is None:
                skipped.append(i)
                continue
        out.append({**row, response_field: new})
    return VariantResult(out, skipped)


def variant_path(out_dir: str | os.PathLike[str], data: str | os.PathLike[str], kind: str
                 ) -> Path:
    """``<out_dir>/<stem>_<kind><suffix>``: a name whose labels ``records.infer_labels`` reads."""
    p = Path(data)
    return Path(out_dir) / f"{p.stem}_{kind.replace('-', '_')}{p.suffix}"


def write_rows(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> Path:
    """Write rows in the format named by the suffix (JSON array, JSONL or Parquet)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(list(rows)).to_parquet(p, index=False)
    elif suffix == ".jsonl":
        p.write_text("".join(json.dumps(_plain(r), ensure_ascii=False) + "\n" for r in rows),
                     encoding="utf-8")
    elif suffix == ".json":
        p.write_text(json.dumps([_plain(r) for r in rows], ensure_ascii=False, indent=2) + "\n",
                     encoding="utf-8")
    else:
        raise UserError(f"{p}: unknown output format {suffix!r}; use .json, .jsonl or .parquet")
    return p


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe values (Parquet rows may hold NaN or numpy scalars)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and math.isnan(v):
            v = None
        elif hasattr(v, "item") and callable(v.item):
            v = v.item()
        out[k] = v
    return out
