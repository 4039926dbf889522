# SPDX-License-Identifier: MIT
"""Run directories: the infrastructure every producer writes and every report reads.

``store`` is one run directory (manifest, identity, Parquet tables in atomic shards);
``load`` gathers the tables of one or more run directories for a report. Both depend on
``errors`` and pandas only, so any study (``dynamics``, ``experiments``) and the
``report`` package import them alike.
"""
