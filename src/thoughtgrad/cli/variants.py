# SPDX-License-Identifier: MIT
"""``thoughtgrad variants``: write CoT-level and response-kind variants of a data file.

    thoughtgrad variants --data FILE --kind corrupted --seed 0 --out FILE
    thoughtgrad variants --data FILE --all --out-dir DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from thoughtgrad.cli.common import HelpFormatter
from thoughtgrad.cli.options import add_config_options, add_set_option, from_args
from thoughtgrad.errors import UserError

DESCRIPTION = """\
From records with a step-by-step response (steps = sentences, lines, or the numbered
items / sections of a markdown solution with their bullets and equations; headers are
not steps; the answer line = the line stating the final answer), write a variant in the
same format as the input:

  none        the bare final answer ("fast thinking"; records that never state one are
              left out)
  simplified  every other step, then the answer line
  detailed    all steps (the response unchanged)
  half-steps  a seeded random half of the steps removed per sample, answer kept
  irrelevant  responses permuted across instructions, no record keeps its own (seeded)
  corrupted   one equation's result changed and every later equation that uses it
              recomputed, up to the final answer; the problem's numbers kept (records
              where no change reaches the answer are left out)

With --all, every kind is written to DIR/<stem>_<kind>.<ext>, names that
`thoughtgrad spectra` turns into labels (cot_level, response_kind).
"""


def register(sub: argparse._SubParsersAction) -> None:
    from thoughtgrad.tasks.variants import KINDS, VariantConfig

    p = sub.add_parser("variants", help="write none/simplified/detailed/... variants of data",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--data", required=True, metavar="FILE",
                   help="input .json / .jsonl / .parquet with step-by-step responses")
    kinds = [k.replace("_", "-") for k in KINDS]
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--kind", choices=kinds, help="the variant to write")
    which.add_argument("--all", action="store_true", help="write every kind (needs --out-dir)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output file for --kind (its suffix picks the format)")
    p.add_argument("--out-dir", default=None, metavar="DIR", help="output folder for --all")
    add_config_options(p, VariantConfig())
    add_set_option(p, example="seed=1")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from thoughtgrad.tasks.records import Labels, load_records, read_rows
    from thoughtgrad.tasks.variants import (
        KINDS,
        VariantConfig,
        build_variant,
        variant_path,
        write_rows,
    )

    if args.all and not args.out_dir:
        raise UserError("--all writes one file per kind: give --out-dir DIR")
    if args.kind and not args.out:
        raise UserError("--kind writes one file: give --out FILE")
    cfg = from_args(VariantConfig(), args)
    # Validate every record first (one-line errors naming file, record and field).
    load_records(args.data, Labels("", None, "correct", ""), prompt_field=cfg.prompt_field,
                 response_field=cfg.response_field)
    rows = read_rows(args.data)
    kinds = KINDS if args.all else (args.kind.replace("-", "_"),)
    outs = {kind: variant_path(args.out_dir, args.data, kind) if args.all else args.out
            for kind in kinds}
    for out in outs.values():  # every output checked before any is written
        if Path(out).exists() and Path(out).resolve() == Path(args.data).resolve():
            raise UserError(f"{out}: is the input --data file; write the variant elsewhere "
                            "(it would replace the responses it is built from)")
    for kind in kinds:
        result = build_variant(rows, kind, seed=cfg.seed, prompt_field=cfg.prompt_field,
                               response_field=cfg.response_field)
        out = outs[kind]
        path = write_rows(out, result.rows)
        note = ""
        if result.skipped:
            why = ("no equation whose change reaches the answer" if kind == "corrupted"
                   else "no stated final answer")
            note = (f"; {len(result.skipped)} records with {why} left out "
                    f"(first: record {result.skipped[0]})")
        print(f"{kind}: {len(result.rows)} records -> {path}{note}")
        if result.skipped:
            print(f"warning: {args.data}: {len(result.skipped)} records left out of {kind}",
                  file=sys.stderr)
    return 0
