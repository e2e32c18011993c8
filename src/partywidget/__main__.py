"""``python -m partywidget``: the same as the ``partywidget`` script."""

from __future__ import annotations

import sys

from partywidget.cli import main

sys.exit(main())
