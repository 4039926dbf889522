# SPDX-License-Identifier: MIT
"""The one supervised fine-tuning loop every regime shares, its callbacks and its checkpoint."""
