"""``config``: compiler and linker flags for the libringpool installed with this package."""

from __future__ import annotations

import argparse

from allocator import config
from audit.errors import AuditError


class ConfigCommand:
    """Print the flags and paths to build C programs against the bundled libringpool.

    The Python package carries its own prefix: ringpool.h, libringpool.so
    (SONAME libringpool.so.0), the interposer libringpool-preload.so and a
    relocatable ringpool.pc. So a C program builds against the library that came
    with the wheel, with nothing else installed:

        cc app.c $(ringpool-audit config --cflags --libs) -o app

    --libs includes -Wl,-rpath,DIR (the package directory is not on the loader's
    path). The same as `python -m allocator --cflags --libs`; for pkg-config:
    PKG_CONFIG_PATH=$(ringpool-audit config --pkgconfigdir) pkg-config --cflags --libs ringpool.
    """

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        config.add_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        try:
            print(config.render(args))
        except (FileNotFoundError, ValueError) as exc:
            raise AuditError(f"config: {exc}") from exc
        return 0
