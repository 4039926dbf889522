# SPDX-License-Identifier: MIT
"""Small pieces shared by the subcommands: argument types, progress bars, tables."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import pandas as pd

T = TypeVar("T")


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


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "",
             unit: str = "it", disable: bool | None = None) -> Iterator[T]:
    """A tqdm progress bar on stderr (hidden when stderr is not a terminal and CI is set)."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not sys.stderr.isatty()
    yield from tqdm(items, total=total, desc=desc, unit=unit, disable=disable,
                    dynamic_ncols=True, file=sys.stderr)


def bar_factory():
    """``make(label, total)`` -> a ``(done, total, loss)`` callback driving a progress bar
    on stderr labelled ``label`` (say what is done: ``train addition-n3000-cot``); the
    loss is shown when it is a number. Without a terminal (logs, CI, a pipe), a plain
    line every tenth of the work instead, so a long run is never silent."""
    from tqdm.auto import tqdm

    def make(label: str, total: int):
        bar = tqdm(total=total, desc=label, dynamic_ncols=True, file=sys.stderr,
                   disable=not sys.stderr.isatty(), leave=False)
        every = max(1, total // 10)

        def update(done: int, total_: int, loss: float) -> None:
            if bar.disable and (done % every == 0 or done == total_):
                shown = f" loss {loss:.4f}" if math.isfinite(loss) else ""
                print(f"{label}: {done}/{total_}{shown}", file=sys.stderr, flush=True)
            bar.n = done
            if math.isfinite(loss):
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.refresh()
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
