"""ringpool-audit: snapshots by origin tag, diffs, leak gates and the bulk-free bench.

The package's version is ``allocator.__version__`` (the C library's).
"""
