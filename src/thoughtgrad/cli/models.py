# SPDX-License-Identifier: MIT
"""``thoughtgrad models``: the packaged trained models, and dequantising them ahead of time."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from thoughtgrad.cli.common import HelpFormatter

DESCRIPTION = """\
List the trained models that install from the package registry with their weights inside
(GGUF files, 4-bit quantised), use them as --model pkg:NAME in any command. The first
use dequantises one to fp32 and caches it as a safetensors directory under
$THOUGHTGRAD_CACHE (default ~/.cache/thoughtgrad); later loads read the cache in seconds.
--prepare does the first use now. Weights are the quantised values, so every name shown
says "... dequantised".
"""

MB = 1 << 20


def _package_bytes(spec: Any) -> int | None:
    """Bytes of the GGUF (or its chunks) inside the installed package."""
    from thoughtgrad.models import packaged

    if not packaged.installed(spec):
        return None
    if not spec.assembled:
        return packaged.gguf_path(spec).stat().st_size
    module = __import__(spec.module)
    return sum(p.stat().st_size for p in module.chunk_paths() if p.exists())


def rows() -> list[dict[str, Any]]:
    """One dict per packaged model: name, what it is, licence, installed, cached, sizes."""
    from thoughtgrad.models import cache, packaged

    out = []
    for spec in packaged.PACKAGED.values():
        entry = packaged.cached_entry(spec)
        out.append({
            "name": packaged.PREFIX + spec.name, "model": spec.display_name,
            "license": spec.license, "installed": packaged.installed(spec),
            "cached": entry is not None, "package_bytes": _package_bytes(spec),
            "cache_bytes": cache.entry_size(entry) if entry is not None else None,
            "cache_dir": str(entry) if entry is not None else None, "install": spec.pip,
        })
    return out


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n / MB:,.0f} MB"


def _print_table(table: list[dict[str, Any]]) -> None:
    from thoughtgrad.models import cache

    head = ("name", "model", "license", "installed", "cached", "package", "cache")
    body = [(r["name"], r["model"], r["license"].split(" (")[0], "yes" if r["installed"] else
             "no", "yes" if r["cached"] else "no", _size(r["package_bytes"]),
             _size(r["cache_bytes"])) for r in table]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    for line in (head, *body):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    print(f"\ncache: {cache.models_dir()}")
    for r in table:
        if not r["installed"]:
            print(f"install {r['name']}: {r['install']}")
    if any(r["name"].startswith("pkg:gemma") and r["installed"] for r in table):
        print("Gemma-3 is provided under the Gemma terms of use: "
              "https://ai.google.dev/gemma/terms")


def prepare(name: str) -> Path:
    """Dequantise ``name`` (a ``pkg:`` name, with or without the prefix, or a .gguf file)
    into the cache; the entry's directory."""
    from thoughtgrad.models import packaged
    from thoughtgrad.models.hf import resolve_model

    if not packaged.is_packaged(name) and not name.lower().endswith(".gguf"):
        name = packaged.PREFIX + name
    return Path(resolve_model(name))


def run(args: argparse.Namespace) -> int:
    for name in args.prepare or ():
        start = time.perf_counter()
        entry = prepare(name)
        print(f"{name}: ready in {time.perf_counter() - start:.1f} s at {entry}",
              file=sys.stderr)
    table = rows()
    if args.json:
        print(json.dumps(table, indent=1))
    else:
        _print_table(table)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the packaged trained models (installed? cached?)",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--prepare", action="append", metavar="NAME",
                   help="dequantise this packaged model (pkg:NAME or NAME) or .gguf file into "
                        "the cache now (repeatable)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=run)
