"""``python -m optlaw <command> ...`` (and ``torchrun ... -m optlaw train ...``)."""

import sys

from optlaw.entry.cli import main

sys.exit(main())
