"""`python -m batch`: see batch.cli."""

import sys

from batch.cli import main

sys.exit(main())
