"""``python -m lrpkit.book``: see :mod:`lrpkit.book.command`."""
import sys

from .command import main

sys.exit(main())
