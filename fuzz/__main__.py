"""``python -m fuzz --target {header,message} --runs N``: see `fuzz.run`."""

import sys

from fuzz.run import main

sys.exit(main())
