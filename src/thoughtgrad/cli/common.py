# SPDX-License-Identifier: MIT
"""Small pieces shared by the subcommands: argument types, the progress bar, tables."""

from __future__ import annotations

import argparse
import math
import sys
import time

import pandas as pd


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults in --help (except unset ``None`` ones) and keep description line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default == [] or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _number_type(cast: type, lowest: float, *, strict: bool, name: str, doc: str):
    """An argparse ``type=``: ``cast`` of the text, finite, ``> lowest`` (``strict``) or
    ``>= lowest``; a bad value gives argparse's one-line usage error with our reason."""
    what = "an integer" if cast is int else "a number"
    bound = f"> {lowest:g}" if strict else f">= {lowest:g}"
    rule = f"must be {bound}" if cast is int else f"must be a finite number {bound}"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < lowest or (strict and value == lowest):
            raise argparse.ArgumentTypeError(f"{rule}, got {text}")
        return value

    parse.__name__ = parse.__qualname__ = name
    parse.__doc__ = doc
    return parse


positive_int = _number_type(int, 1, strict=False, name="positive_int",
                            doc="argparse type: an integer >= 1 (counts, sizes).")
nonneg_int = _number_type(int, 0, strict=False, name="nonneg_int",
                          doc="argparse type: an integer >= 0.")
positive_float = _number_type(float, 0.0, strict=True, name="positive_float",
                              doc="argparse type: a finite number > 0 (tolerances, rates).")
nonneg_float = _number_type(float, 0.0, strict=False, name="nonneg_float",
                            doc="argparse type: a finite number >= 0 (temperatures).")


def int_list(text: str) -> list[int]:
    """Parse ``1,2,4`` or ``2-6`` (inclusive) or a mix: ``2-4,7`` (:func:`config.int_items`)."""
    from thoughtgrad.config import int_items

    try:
        return int_items(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None


def add_out_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, what: str,
                   default: str | None = None, required: bool = False,
                   metavar: str = "RUN_DIR", inherit: bool = False) -> None:
    """``--out``: where a command writes, required or with one documented default (never
    a directory derived from an input). ``inherit``: a subcommand's copy that keeps the
    value given before the subcommand."""
    shown = f" [default: {default}]" if default is not None else ""
    parser.add_argument("--out", required=required, metavar=metavar, help=what + shown,
                        default=argparse.SUPPRESS if inherit else default)


def add_device_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--device`` for a command without a config: ``auto`` (CUDA when present, else CPU)."""
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ... "
                             "[default: auto]")


class ProgressBar:
    """Work done on stderr: a tqdm bar labelled ``label`` on a terminal, else (logs, CI, a
    pipe) a plain line at every tenth of the work, so a long run is never silent. Drive it
    with :meth:`reset` (the total) and :meth:`advance` (``n`` more done) or :meth:`set`
    (``done`` so far, with the loss when it is a number); ``rate`` adds units per second
    to the plain lines."""

    def __init__(self, label: str, *, total: int = 0, unit: str = "it", rate: bool = False,
                 leave: bool = True) -> None:
        from tqdm.auto import tqdm

        self.label, self.unit, self.rate = label, unit, rate
        self.bar = tqdm(total=total, desc=label, unit=unit, dynamic_ncols=True,
                        file=sys.stderr, disable=not sys.stderr.isatty(), leave=leave)
        self.total, self.done, self.next_line = total, 0, max(1, total // 10)
        self.start = time.perf_counter()

    def reset(self, total: int) -> None:
        """Start over with ``total`` units to do (said once in a plain line)."""
        self.bar.reset(total=total)
        self.total, self.done, self.next_line = total, 0, max(1, total // 10)
        if self.bar.disable:
            print(f"{self.label}: {total} {self.unit}s to measure", file=sys.stderr, flush=True)

    def advance(self, n: int) -> None:
        self.set(self.done + n)

    def set(self, done: int, loss: float = math.nan) -> None:
        self.done = done
        self.bar.n = done
        if math.isfinite(loss):
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        self.bar.refresh()
        if self.bar.disable and self.total and (done >= self.next_line or done == self.total):
            self._line(loss)
            while self.next_line <= done:
                self.next_line += max(1, self.total // 10)

    def _line(self, loss: float) -> None:
        text = f"{self.label}: {self.done}/{self.total}"
        if self.rate:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            text += (f" {self.unit}s ({100 * self.done / self.total:.0f}%, "
                     f"{rate:.2f} {self.unit}s/s)")
        if math.isfinite(loss):
            text += f" loss {loss:.4f}"
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def bar_factory():
    """``make(label, total)`` -> a ``(done, total, loss)`` callback driving a
    :class:`ProgressBar` labelled ``label`` (say what is done: ``train
    addition-n3000-cot``), closed when the work is done."""

    def make(label: str, total: int):
        bar = ProgressBar(label, total=total, leave=False)

        def update(done: int, total_: int, loss: float) -> None:
            bar.total = total_
            bar.set(done, loss)
            if done >= total_:
                bar.close()

        return update

    return make


def print_table(df: pd.DataFrame, *, title: str | None = None, floatfmt: str = ".3f") -> None:
    """Print a DataFrame as an aligned plain-text table on stdout."""
    if title:
        print(title)
    with pd.option_context("display.max_rows", 500, "display.max_columns", 50,
                           "display.width", 200,
                           "display.float_format", lambda v: format(v, floatfmt)):
        print(df.to_string(index=False))
