# SPDX-License-Identifier: MIT
"""Corrupted responses: one equation's result changed and the change carried through.

The response keeps its own problem's numbers, but one equation's result is changed by a
seeded ``1..MAX_DELTA`` and every later equation that uses it is recomputed, and so on, up
to the final answer (:func:`corrupt_response`): wrong for reasoning reasons, not because
it answers another problem. Equations are found by :func:`equations` (arithmetic runs,
LaTeX fractions and ``\\times`` included, units and prose left out) and checked to their
own rounding before any is used.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from thoughtgrad.tasks.answers import NUMBER, answer_span

MAX_DELTA = 9
"""A corrupted result is shifted by a seeded integer in ``1..MAX_DELTA``."""

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
