# SPDX-License-Identifier: MIT
"""Named studies composed from tasks, models, training, evaluation and the run store."""
