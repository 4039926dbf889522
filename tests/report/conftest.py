# SPDX-License-Identifier: MIT
"""Fixtures of the report tests (the builders live in report_fixtures.py)."""

from report_fixtures import saved, two_runs  # noqa: F401
