"""``python -m lrpkit.cli``: the ``lrpkit`` command."""
import sys

from . import main

sys.exit(main())
