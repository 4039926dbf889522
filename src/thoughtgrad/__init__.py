# SPDX-License-Identifier: MIT
"""thoughtgrad: what chain-of-thought vs direct-answer supervision does to a model while it learns.

Studies (one subpackage each): the toy CoT lab (``tasks``, ``models.gpt_mini``, ``train``,
``evaluate``), layer-wise gradient spectra (``spectra``), training dynamics (``dynamics``)
and test-time compute (``evaluate``). Results go to a run directory (``runs``).
"""

__version__ = "0.1.0"
