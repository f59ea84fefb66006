"""ringpool-audit: snapshots by origin tag, diffs, leak gates and the bulk-free bench."""

from __future__ import annotations

# Not `from typing import ...`: `run --python` starts the audited program from
# this package (audit._pyboot), and importing typing would add about 12 M
# instructions to its start-up.  mypy reads this constant as typing's.
TYPE_CHECKING = False

__all__ = ["__version__"]

if TYPE_CHECKING:
    __version__: str
else:
    def __getattr__(name: str) -> object:
        # The version is the C library's (allocator.__version__, from ringpool.h); it
        # is read on first use, so that importing a pure-Python module of audit (the
        # report schema, say) loads no extension.
        if name == "__version__":
            from allocator import __version__

            return __version__
        raise AttributeError(f"module 'audit' has no attribute {name!r}")
