"""``python -m allocator --cflags --libs``: flags to build C programs against the
libringpool that came with this package (see :mod:`allocator.config`)."""

import sys

from allocator.config import main

if __name__ == "__main__":
    sys.exit(main())
