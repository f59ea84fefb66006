"""Where the native files that come with the package are, for C users and the CLI.

An installed ringpool (wheel or sdist) carries, inside the ``allocator`` package,
a prefix of its own::

    include/ringpool.h
    lib/libringpool.so, lib/libringpool.so.0     (SONAME libringpool.so.0)
    lib/ringpool/libringpool-preload.so          (the malloc interposer)
    lib/pkgconfig/ringpool.pc                    (relocatable: ${pcfiledir})

so a C program can be built against it with nothing else installed::

    cc app.c $(python -m allocator --cflags --libs)
    cc app.c $(ringpool-audit config --cflags --libs)

``--libs`` includes ``-Wl,-rpath,DIR``: the package directory is not on the
loader's search path. This module imports nothing native.
"""

from __future__ import annotations

import argparse
import os
import sys

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
PRELOAD_NAME = "libringpool-preload.so"
PRELOAD_ENV = "RINGPOOL_PRELOAD_LIB"


def include_dir() -> str:
    """Directory holding ``ringpool.h``."""
    return os.path.join(PACKAGE_DIR, "include")


def lib_dir() -> str:
    """Directory holding ``libringpool.so`` (and ``libringpool.so.0``)."""
    return os.path.join(PACKAGE_DIR, "lib")


def pkgconfig_dir() -> str:
    """Directory holding ``ringpool.pc``: for ``PKG_CONFIG_PATH``."""
    return os.path.join(lib_dir(), "pkgconfig")


def cflags() -> list[str]:
    """Compiler flags for a C program using ``ringpool.h``."""
    return [f"-I{include_dir()}"]


def libs() -> list[str]:
    """Linker flags for a C program using ``libringpool.so`` from the package."""
    return [f"-L{lib_dir()}", f"-Wl,-rpath,{lib_dir()}", "-lringpool"]


# What a shell (and make, which hands a recipe to one) would read as other than a plain
# character of a word; bytes past ASCII are plain to both.
_SHELL_SPECIAL = frozenset(" \t!\"#$&'()*;<>?[\\]^`{|}~")


# What pkg-config cannot read in the directory of a relocatable .pc file (pkgconf 1.8:
# PKG_CONFIG_PATH is split at ':'; ${pcfiledir} is not escaped for quotes, backslashes,
# '$' or parentheses, so its flags come out empty or expanded by the shell).
_PKGCONFIG_UNSAFE = frozenset(":'\"\\$()")


def shell_word(word: str) -> str:
    """word as the shell reads it back as one word, the way pkg-config escapes its
    output: a backslash before each space, quote, ``$`` and other character the shell
    would split at or expand (``-I/My\\ Projects/include``); a word holding a newline
    in single quotes. A word of plain characters comes back as it is."""
    if "\n" in word:
        return "'" + word.replace("'", "'\\''") + "'"
    return "".join("\\" + c if c in _SHELL_SPECIAL else c for c in word)


def source_checkout() -> str | None:
    """The repository root when this package runs from a source checkout
    (an editable install or ``PYTHONPATH``), else None."""
    root = os.path.dirname(PACKAGE_DIR)
    if os.path.isfile(os.path.join(root, "Makefile")) and os.path.isdir(os.path.join(root, "csrc", "preload")):
        return root
    return None


def preload_library() -> str:
    """Absolute path of the malloc interposer, ``libringpool-preload.so``.

    In this order: ``$RINGPOOL_PRELOAD_LIB``; in a source checkout, the one
    ``make preload`` builds (``build/``); the one installed inside this package.
    Raises FileNotFoundError, saying how to get the library for the way ringpool
    was installed, when the file is not there.
    """
    env = os.environ.get(PRELOAD_ENV)
    if env:
        path = os.path.abspath(env)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path}: ${PRELOAD_ENV} names a file that does not exist; point it at a "
                f"{PRELOAD_NAME} (`make preload` builds one in build/), or unset it to use the "
                f"one installed with ringpool")
        return path
    packaged = os.path.join(lib_dir(), "ringpool", PRELOAD_NAME)
    root = source_checkout()
    if root is not None:
        built = os.path.join(root, "build", PRELOAD_NAME)
        for path in (built, packaged):
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(
            f"{built}: the interposer library is missing in this source checkout; "
            f"build it with `make preload` in {root} (or reinstall: `make setup-py`, "
            f"`pip install -e .`)")
    if os.path.isfile(packaged):
        return packaged
    raise FileNotFoundError(
        f"{packaged}: the interposer library is missing from the installed ringpool package; "
        f"reinstall it (`pip install --force-reinstall ringpool`, or `pip install .` in a "
        f"source checkout: the wheel and the sdist build both include it), or set "
        f"${PRELOAD_ENV} to a {PRELOAD_NAME} built with `make preload` "
        f"(`make install` puts it in PREFIX/lib/ringpool/)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m allocator`` and ``ringpool-audit config``."""
    parser.add_argument("--cflags", action="store_true", help="compiler flags (-I...)")
    parser.add_argument("--libs", action="store_true",
                        help="linker flags (-L... -Wl,-rpath,... -lringpool)")
    parser.add_argument("--includedir", action="store_true", help="the directory of ringpool.h")
    parser.add_argument("--libdir", action="store_true", help="the directory of libringpool.so")
    parser.add_argument("--pkgconfigdir", action="store_true",
                        help="the directory of ringpool.pc, for PKG_CONFIG_PATH")
    parser.add_argument("--preload", action="store_true",
                        help="the path of the malloc interposer libringpool-preload.so")
    parser.add_argument("--version", action="store_true", help="the version of ringpool")


def render(args: argparse.Namespace) -> str:
    """What the options ask for: flags on one line, then one path or value per line.

    Raises FileNotFoundError when a file asked for is not installed, ValueError
    when nothing was asked for.
    """
    words: list[str] = []
    if args.cflags:
        _need(os.path.join(include_dir(), "ringpool.h"))
        words += cflags()
    if args.libs:
        _need(os.path.join(lib_dir(), "libringpool.so"))
        if ":" in lib_dir():
            raise ValueError(
                f"--libs: {lib_dir()} holds ':', where the dynamic loader splits a run path "
                "(-Wl,-rpath) and LD_LIBRARY_PATH, so a program linked with it would not find "
                "libringpool.so.0 when it starts; install ringpool under a directory without ':'")
        words += libs()
    lines = [" ".join(shell_word(w) for w in words)] if words else []
    if args.includedir:
        lines.append(include_dir())
    if args.libdir:
        lines.append(lib_dir())
    if args.pkgconfigdir:
        _need(os.path.join(pkgconfig_dir(), "ringpool.pc"))
        unread = sorted(set(pkgconfig_dir()) & _PKGCONFIG_UNSAFE)
        if unread:
            raise ValueError(
                f"--pkgconfigdir: {pkgconfig_dir()} holds {' '.join(unread)}, which pkg-config "
                "cannot read in a path (PKG_CONFIG_PATH splits at ':'; ${pcfiledir} loses quotes, "
                "backslashes, '$' and parentheses, and pkgconf then prints no flags at all): "
                "use `config --cflags --libs` instead")
        lines.append(pkgconfig_dir())
    if args.preload:
        lines.append(preload_library())
    if args.version:
        lines.append(version())
    if not lines:
        raise ValueError("nothing asked for: give --cflags, --libs, --includedir, --libdir, "
                         "--pkgconfigdir, --preload or --version")
    return "\n".join(lines)


def version() -> str:
    """ringpool's version (from the RINGPOOL_VERSION_* macros of ringpool.h)."""
    from allocator import __version__

    return __version__


def _need(path: str) -> None:
    if not os.path.isfile(path):
        hint = ("run `make setup-py` (or `pip install -e .`) in the checkout"
                if source_checkout() else "reinstall ringpool (`pip install --force-reinstall ringpool`)")
        raise FileNotFoundError(f"{path}: not installed with this ringpool package; {hint}")


def main(argv: list[str] | None = None, prog: str = "python -m allocator") -> int:
    """``python -m allocator --cflags --libs``: exit 0, or 1 with one line on stderr."""
    parser = argparse.ArgumentParser(prog=prog, description="Build C programs against the "
                                     "libringpool that came with this Python package.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        print(render(args))
    except (FileNotFoundError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    return 0
