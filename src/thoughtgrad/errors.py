# SPDX-License-Identifier: MIT
"""The one error type users see: a clear, one-line message, never a traceback.

Library code raises :class:`UserError` for bad input (a missing field, a corrupt
checkpoint, an impossible config); the CLI prints ``error: <message>`` and exits 2.
Messages name the file, the record and the field where they apply.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or configuration, reported to the user as one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def where(path: object, record: int | None = None, field: str | None = None) -> str:
    """Format a location prefix such as ``data.json: record 3: field 'output'``."""
    parts = [str(path)]
    if record is not None:
        parts.append(f"record {record}")
    if field is not None:
        parts.append(f"field {field!r}")
    return ": ".join(parts)
