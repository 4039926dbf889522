# SPDX-License-Identifier: MIT
"""Models: the toy ``gpt_mini`` decoder and loaders for Hugging Face causal LMs."""
