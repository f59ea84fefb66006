"""Errors the CLI turns into exit code 1 with a one-line message."""

from __future__ import annotations


class AuditError(Exception):
    """A user-facing error: bad arguments, unreadable or malformed report, failed command."""


class UsageError(AuditError):
    """Bad command-line arguments (argparse's own errors are routed here)."""
