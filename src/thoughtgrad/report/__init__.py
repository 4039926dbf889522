# SPDX-License-Identifier: MIT
"""Run directories, tables, figures and the offline HTML report."""
