"""``python -m lrpkit.teaching``: see :mod:`lrpkit.teaching.student`."""
import sys

from .student import main

sys.exit(main())
