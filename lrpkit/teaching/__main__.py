"""``python -m lrpkit.teaching``: see :mod:`lrpkit.teaching.cli`."""
import sys

from .cli import main

sys.exit(main())
