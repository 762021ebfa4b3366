"""``python -m bb_backoff``: the ``bb-backoff`` command."""

import sys

from ._cli import main

sys.exit(main())
