"""``python -m audit``: the same as the ``ringpool-audit`` console script."""

import sys

from audit.cli import main

if __name__ == "__main__":
    sys.exit(main())
