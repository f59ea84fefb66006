"""ringpool-audit: snapshots by origin tag, diffs, leak gates and the bulk-free bench."""

from typing import TYPE_CHECKING, Any

__all__ = ["__version__"]

if TYPE_CHECKING:
    __version__: str
else:
    def __getattr__(name: str) -> Any:
        # The version is the C library's (allocator.__version__, from ringpool.h); it
        # is read on first use, so that importing a pure-Python module of audit (the
        # report schema, say) loads no extension.
        if name == "__version__":
            from allocator import __version__

            return __version__
        raise AttributeError(f"module 'audit' has no attribute {name!r}")
