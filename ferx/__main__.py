"""``python -m ferx ...``: the ``ferx`` command, where its script is not on the PATH."""

import sys

from ferx.cli import main

sys.exit(main())
