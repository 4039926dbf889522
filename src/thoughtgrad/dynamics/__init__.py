# SPDX-License-Identifier: MIT
"""Training dynamics: gradient norms and spikes, gradient coherence, curvature, surprisal."""
