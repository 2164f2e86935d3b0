"""`python -m host.bench`: see host.bench.runner."""

import sys

from host.bench.runner import main

sys.exit(main())
