"""``python -m harness.cli``: the same as the ``harness`` command."""

import sys

from harness.cli.app import main

sys.exit(main())
