"""`python -m host.provision`: see host.provision.cli."""
import sys

from host.provision.cli import main

sys.exit(main())
