"""``python -m analysis …`` — see :mod:`analysis.cli`."""

import sys

from .cli import main

sys.exit(main())
