# SPDX-License-Identifier: MIT
"""The ``thoughtgrad`` command: one subcommand per study.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
Errors a user can fix (:class:`~thoughtgrad.errors.UserError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from thoughtgrad import __version__
from thoughtgrad.errors import UserError

# Subcommand modules, in the order `thoughtgrad --help` lists them.
COMMANDS: list[str] = [
    "demo",
    "toy",
    "spectra",
    "grid",
    "variants",
    "compare",
    "report",
    "train",
    "hessian",
    "surprisal",
    "models",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thoughtgrad",
        description=(
            "Measure what chain-of-thought ('slow thinking') versus direct-answer ('fast "
            "thinking') supervision does to a language model while it learns. Every study "
            "writes a run directory (manifest.json + Parquet tables readable with pandas)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"thoughtgrad {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"thoughtgrad.cli.{name}").register(sub)
    return parser


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM (``timeout``, a batch scheduler) ends a run like Ctrl-C: the run directory
    is marked interrupted and everything written so far stays."""
    raise KeyboardInterrupt(f"signal {signum}")


class _Stderr:
    """A stream that writes to whatever ``sys.stderr`` is at the time of the write (so a
    second ``main()`` in one process, or a test's captured stderr, gets the messages)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_HANDLER = logging.StreamHandler(_Stderr())
_HANDLER.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))


def _log_to_stderr(level: int) -> None:
    """Log records of ``level`` and above go to stderr, once, beside any other handler."""
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    root.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _log_to_stderr(logging.DEBUG if args.verbose else logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: results written so far are kept; re-run the same command "
              "to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
