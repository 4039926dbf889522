# SPDX-License-Identifier: MIT
"""``thoughtgrad report``: one self-contained offline report.html for one or more runs."""

from __future__ import annotations

import argparse

from thoughtgrad.cli.common import HelpFormatter, add_out_option
from thoughtgrad.cli.compare import add_compare_options, config_from_args, print_notes

DEFAULT_OUT = "report.html"
"""In the current directory, never inside a run being read (give --out to put it there)."""

DESCRIPTION = """\
Write ONE self-contained HTML page (figures inlined as PNG, inline CSS and JavaScript, no
network) with a section per study present in the runs (layer spectra, correct vs
irrelevant separation, toy lab accuracy and errors, dynamics, surprisal, test-time
compute), each run's manifest, the tables, and the interactive serial-compute budget
simulator. Figures are also saved as PNG + PDF in figures/ next to the page. Sections
that cannot be shown are listed under Notes; a page is written for whatever can be.
"""


def run(args: argparse.Namespace) -> int:
    from thoughtgrad.report.html import write_report

    path, comp = write_report(args.runs, args.out, config_from_args(args))
    print_notes(comp)
    print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one offline report.html for one or more runs",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    add_compare_options(p)
    add_out_option(p, default=DEFAULT_OUT, metavar="FILE",
                   what="the page to write (its figures/ beside it)")
    p.set_defaults(func=run)
