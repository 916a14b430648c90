"""`python -m ufo_nas`: the `ufo` command."""

import sys

from ufo_nas.cli import main

sys.exit(main())
