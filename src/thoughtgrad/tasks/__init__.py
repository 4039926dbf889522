# SPDX-License-Identifier: MIT
"""Problems and texts: the toy lab's tasks, Alpaca-style records, encoding and variants."""
