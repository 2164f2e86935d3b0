"""`python -m host.bench`: see host.bench.cli."""

import sys

from host.bench.cli import main

sys.exit(main())
