"""ringpool-audit: snapshots by origin tag, diffs, leak gates and the bulk-free bench."""

__all__ = ["__version__"]

__version__ = "0.1.0"
