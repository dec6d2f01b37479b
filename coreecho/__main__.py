"""``python -m coreecho`` runs the ``coreecho`` command line."""

import sys

from coreecho.cli import main

sys.exit(main())
