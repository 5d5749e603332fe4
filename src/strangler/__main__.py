"""``python -m strangler``: the same as the ``strangler`` command."""

import sys

from strangler.cli import main

sys.exit(main())
