"""`python -m counterpoise ...` runs the command line (see counterpoise.cli)."""

import sys

from .cli import main

sys.exit(main())
