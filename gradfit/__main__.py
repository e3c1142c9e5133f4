"""``python -m gradfit``: the same as the ``gradfit`` command."""

import sys

from .cli import main

sys.exit(main())
