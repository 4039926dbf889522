# SPDX-License-Identifier: MIT
"""The toy chain-of-thought lab's problems and texts (seed 003).

A problem is K single digits 0..9 joined by operators. Text is one character a token:

    prompt      <3+4+5+6>
    answer      18#                          (the "direct" regime of the toy lab)
    cot         {3+4=7;7+5=12;12+6=18}18#     (running-total trace, then the answer)
    simplified  {7+5=12;12+6=18}18#           (every other step, always ending on the last)
    half        a seeded random half of the steps removed (seed 000's "Direct" regime)

Task families are registry entries (:func:`register_task`): ``addition`` (a sum, which
attention can in principle average in one layer) and ``fold`` (a left fold of mixed
``+ - *`` mod 10, whose dependence is truly serial). The prompt carries no loss; every
response token does (trace and answer alike).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from thoughtgrad.errors import UserError
from thoughtgrad.tasks.tokens import IGNORE_INDEX

PAD = "."
VOCAB = PAD + "0123456789+-*=;{}<>#"
K_MIN, K_MAX = 1, 20
STYLES = ("answer", "cot", "simplified", "half")


# -- tokenizer ------------------------------------------------------------------------------
class CharTokenizer:
    """One character = one token over :data:`VOCAB`; id 0 is the pad character."""

    def __init__(self, vocab: str = VOCAB) -> None:
        self.vocab = vocab
        self.stoi = {c: i for i, c in enumerate(vocab)}
        self.pad_id = self.stoi[PAD]
        self.eos_id = self.stoi["#"]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            raise UserError(f"toy tokenizer: character {exc.args[0]!r} is not in the "
                            f"vocabulary {self.vocab!r}") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.vocab[i] for i in ids if 0 <= i < len(self.vocab))


TOKENIZER = CharTokenizer()


# -- problems ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One serial step ``a op b = result``."""

    a: int
    op: str
    b: int
    result: int

    def text(self) -> str:
        return f"{self.a}{self.op}{self.b}={self.result}"


@dataclass(frozen=True)
class Problem:
    """K digits and the K-1 operators between them."""

    digits: tuple[int, ...]
    ops: tuple[str, ...]

    @property
    def k(self) -> int:
        return len(self.digits)

    def prompt(self) -> str:
        body = str(self.digits[0]) + "".join(f"{o}{d}" for o, d in zip(self.ops, self.digits[1:],
                                                                          strict=True))
        return f"<{body}>"


class ToyTask:
    """A task family: how problems are drawn and how each serial step is evaluated."""

    name: str = ""
    operators: tuple[str, ...] = ("+",)

    def apply(self, a: int, op: str, b: int) -> int:
        raise NotImplementedError

    def space_size(self, k: int) -> int:
        """How many distinct problems with K digits exist."""
        return 10**k * len(self.operators) ** (k - 1)

    def draw(self, rng: random.Random, k: int) -> Problem:
        digits = tuple(rng.randrange(10) for _ in range(k))
        ops = tuple(rng.choice(self.operators) for _ in range(k - 1))
        return Problem(digits, ops)

    def steps(self, p: Problem) -> list[Step]:
        """The left-fold trace: acc op next = new, K-1 steps."""
        acc, out = p.digits[0], []
        for op, d in zip(p.ops, p.digits[1:], strict=True):
            new = self.apply(acc, op, d)
            out.append(Step(acc, op, d, new))
            acc = new
        return out

    def answer(self, p: Problem) -> int:
        acc = p.digits[0]
        for op, d in zip(p.ops, p.digits[1:], strict=True):
            acc = self.apply(acc, op, d)
        return acc


TASKS: dict[str, ToyTask] = {}


def register_task(name: str) -> Callable[[type[ToyTask]], type[ToyTask]]:
    """Class decorator: add a task family to :data:`TASKS` under ``name``."""

    def deco(cls: type[ToyTask]) -> type[ToyTask]:
        inst = cls()
        inst.name = name
        TASKS[name] = inst
        return cls

    return deco


@register_task("addition")
class Addition(ToyTask):
    """Sum of K single digits; the trace is the running total."""

    operators = ("+",)

    def apply(self, a: int, op: str, b: int) -> int:
        return a + b


@register_task("fold")
class ModFold(ToyTask):
    """Left fold of mixed ``+ - *`` mod 10: ``<3+4*5-6>`` -> ``{3+4=7;7*5=5;5-6=9}9#``."""

    operators = ("+", "-", "*")

    def apply(self, a: int, op: str, b: int) -> int:
        if op == "+":
            return (a + b) % 10
        if op == "-":
            return (a - b) % 10
        return (a * b) % 10


def get_task(name: str) -> ToyTask:
    if name not in TASKS:
        raise UserError(f"unknown toy task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def check_k(k: int) -> int:
    if not K_MIN <= k <= K_MAX:
        raise UserError(f"K={k} is outside {K_MIN}..{K_MAX}")
    return k


# -- responses ----------------------------------------------------------------------------
def _sample_seed(seed: int, p: Problem) -> int:
    h = hashlib.sha256(f"{seed}|{p.prompt()}".encode()).digest()
    return int.from_bytes(h[:8], "little")


def kept_steps(task: ToyTask, p: Problem, style: str, *, seed: int = 0) -> list[Step]:
    """The trace steps a style keeps (all for ``cot``; none for ``answer``)."""
    steps = task.steps(p)
    if style == "answer":
        return []
    if style == "cot":
        return steps
    if style == "simplified":
        n = len(steps)
        return [s for i, s in enumerate(steps) if (n - 1 - i) % 2 == 0]
    if style == "half":
        rng = random.Random(_sample_seed(seed, p))
        drop = set(rng.sample(range(len(steps)), len(steps) // 2))
        return [s for i, s in enumerate(steps) if i not in drop]
    raise UserError(f"unknown response style {style!r}; choose one of {STYLES}")


def response(task: ToyTask, p: Problem, style: str, *, seed: int = 0) -> str:
    """The response text for a problem in a style (see module docstring)."""
    ans = f"{task.answer(p)}#"
    if style == "answer":
        return ans
    steps = kept_steps(task, p, style, seed=seed)
    return "{" + ";".join(s.text() for s in steps) + "}" + ans


# -- splits ---------------------------------------------------------------------------------
@dataclass
class Split:
    """Training and evaluation problems, disjoint by problem."""

    train: list[Problem]
    eval: dict[int, list[Problem]]


def make_split(task: ToyTask, *, train_size: int, train_ks: Sequence[int],
               eval_ks: Sequence[int], eval_per_k: int, seed: int) -> Split:
    """Draw evaluation problems first (per K, at most a fifth of that K's space), then
    ``train_size`` training problems with K uniform over ``train_ks``, never an evaluation
    problem. Training problems are distinct while that K's remaining space allows; past it
    they repeat (the count of distinct problems is what ``train_size`` controls).
    """
    for k in (*train_ks, *eval_ks):
        check_k(k)
    if train_size < 1:
        raise UserError(f"train_size must be >= 1, got {train_size}")
    rng = random.Random(seed)
    held: set[Problem] = set()
    evals: dict[int, list[Problem]] = {}
    for k in sorted(set(eval_ks)):
        n = min(eval_per_k, max(1, task.space_size(k) // 5))
        chosen: list[Problem] = []
        seen: set[Problem] = set()
        while len(chosen) < n:
            p = task.draw(rng, k)
            if p not in seen:
                seen.add(p)
                chosen.append(p)
        evals[k] = chosen
        held |= seen
    counts = {k: 0 for k in train_ks}
    for _ in range(train_size):
        counts[rng.choice(list(train_ks))] += 1
    train: list[Problem] = []
    for k, n in counts.items():
        free = task.space_size(k) - sum(1 for p in held if p.k == k)
        distinct: list[Problem] = []
        seen = set()
        target = min(n, free)
        if target == free and free <= 200_000:  # small space: enumerate by rejection is slow
            distinct = _enumerate_free(task, k, held, rng)[:target]
        else:
            while len(distinct) < target:
                p = task.draw(rng, k)
                if p not in held and p not in seen:
                    seen.add(p)
                    distinct.append(p)
        train.extend(distinct)
        train.extend(rng.choice(distinct) for _ in range(n - len(distinct)))
    rng.shuffle(train)
    return Split(train=train, eval=evals)


def _enumerate_free(task: ToyTask, k: int, held: set[Problem], rng: random.Random) -> list[Problem]:
    import itertools

    out = []
    for digits in itertools.product(range(10), repeat=k):
        for ops in itertools.product(task.operators, repeat=k - 1):
            p = Problem(tuple(digits), tuple(ops))
            if p not in held:
                out.append(p)
    rng.shuffle(out)
    return out


# -- tensors --------------------------------------------------------------------------------
def encode_example(prompt: str, resp: str,
                   tok: CharTokenizer = TOKENIZER) -> tuple[list[int], list[int]]:
    """Token ids and labels (aligned, HF convention) with the prompt masked."""
    p, r = tok.encode(prompt), tok.encode(resp)
    return p + r, [IGNORE_INDEX] * len(p) + r


# -- answers and errors ----------------------------------------------------------------------
_STEP_RE = re.compile(r"^(\d+)([+\-*])(\d+)=(\d+)$")


ANSWER_DIGITS = 6
"""Longest integer :func:`extract_answer` reads (the largest toy answer is 9 * 20 = 180)."""


def extract_answer(text: str) -> int | None:
    """The final answer of a response in the lab's grammar, or None when it has none.

    The grammar is ``N#`` (direct) or ``{trace}N#`` (a trace opening the response, one
    ``{`` and one ``}``), where ``N`` is a canonical non-negative integer: digits only, no
    sign, no leading zero (``0`` itself is fine), at most :data:`ANSWER_DIGITS` digits.
    Text after ``#`` is ignored (decoding stops there). Anything else (``18``, ``{..}}7#``,
    ``07#``, ``x{..}7#``) has no answer, so a lucky number after a broken trace never
    counts as correct.
    """
    end = text.find("#")
    if end < 0:
        return None
    body = text[:end]
    if body.startswith("{"):
        if body.count("{") != 1 or body.count("}") != 1:
            return None
        body = body[body.index("}") + 1:]
    elif "{" in body or "}" in body:
        return None
    if not body.isdigit() or len(body) > ANSWER_DIGITS or (len(body) > 1 and body[0] == "0"):
        return None
    return int(body)


def classify_error(task: ToyTask, p: Problem, text: str, style: str) -> str:
    """Name the first thing wrong with a decoded response; ``ok`` when it is right.

    Kinds: ``format:no_end`` (no ``#``), ``format:no_trace`` (a CoT style answered
    directly), ``format:unclosed`` (``{`` without ``}``), ``format:unbalanced`` (more than
    one ``{`` or ``}``), ``format:bad_step`` (a step that
    is not ``a op b = c``), ``format:extra_step`` / ``format:missing_step`` (more or
    fewer ``;``-separated steps than the style asks for), ``format:no_answer`` (no integer
    before ``#``), ``copy:operand`` (a step reads the wrong running value or digit),
    ``arithmetic:step`` (a step's result is wrong), ``copy:answer`` (a correct trace
    followed by a wrong final answer), ``arithmetic:answer`` (a direct answer that is a
    wrong number).
    """
    target = task.answer(p)
    ans = extract_answer(text)
    if ans == target:
        return "ok"
    if "#" not in text:
        return "format:no_end"
    head = text[: text.find("#")]
    if style == "answer":
        return "arithmetic:answer" if ans is not None else "format:no_answer"
    if not head.startswith("{"):
        return "format:no_trace"
    if "}" not in head:
        return "format:unclosed"
    if head.count("{") != 1 or head.count("}") != 1:
        return "format:unbalanced"
    trace = head[1: head.find("}")]
    parts = trace.split(";") if trace else []
    expected = kept_steps(task, p, style)
    parsed = [_STEP_RE.match(s) for s in parts]
    if any(m is None for m in parsed):
        return "format:bad_step"
    if style == "cot":
        if len(parts) > len(expected):
            return "format:extra_step"
        if len(parts) < len(expected):
            return "format:missing_step"
    for m, want in zip(parsed, expected, strict=False):
        assert m is not None
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        if style == "cot" and (a, op, b) != (want.a, want.op, want.b):
            return "copy:operand"
        if c != task.apply(a, op, b):
            return "arithmetic:step"
    if ans is None:
        return "format:no_answer"
    if style != "cot" and len(parts) != len(expected):
        return "format:extra_step" if len(parts) > len(expected) else "format:missing_step"
    return "copy:answer" if ans != target else "ok"
