"""``python -m batcher``: the same as the ``batcher`` command."""

import sys

from batcher.cli import main

sys.exit(main())
