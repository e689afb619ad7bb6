"""`python -m envelope_cli`: the same as the `envelope` console script."""

import sys

from envelope_cli.main import main

sys.exit(main())
