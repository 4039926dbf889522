# SPDX-License-Identifier: MIT
"""``python -m thoughtgrad``: the ``thoughtgrad`` command (also under ``torchrun -m`` or
``accelerate launch -m``)."""

import sys

from thoughtgrad.cli import main

sys.exit(main())
