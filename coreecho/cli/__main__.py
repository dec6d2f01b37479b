"""``python -m coreecho.cli`` (and ``torchrun -m coreecho.cli``) runs the ``coreecho`` command line."""

import sys

from coreecho.cli import main

sys.exit(main())
