"""Builds the cffi extensions and, beside them in the package, the native files
a C user needs: ``allocator/include/ringpool.h``, ``allocator/lib/libringpool.so``
(SONAME ``libringpool.so.0``), ``allocator/lib/ringpool/libringpool-preload.so``
(the malloc interposer) and ``allocator/lib/pkgconfig/ringpool.pc``.

Everything else is in pyproject.toml. The compiler is the one setuptools uses
(``CC`` overrides it); the flags are csrc/flags.mk's, which the Makefile uses too.
"""

import glob
import os
import re
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


def _version() -> str:
    """The version lives in one place: the RINGPOOL_VERSION_* macros of ringpool.h."""
    with open(os.path.join(ROOT, "csrc", "include", "ringpool.h"), encoding="utf-8") as f:
        found = dict(re.findall(r"^#define RINGPOOL_VERSION_(MAJOR|MINOR|PATCH) (\d+)$", f.read(), re.M))
    return "{MAJOR}.{MINOR}.{PATCH}".format(**found)


def _flags() -> dict[str, list[str]]:
    """csrc/flags.mk's ``NAME := words`` lines, without -Werror (see that file)."""
    flags = {}
    with open(os.path.join(ROOT, "csrc", "flags.mk"), encoding="utf-8") as f:
        for line in f:
            name, sep, value = line.partition(":=")
            if sep and not line.startswith("#"):
                flags[name.strip()] = [w for w in value.split() if w != "-Werror"]
    return flags


class BuildNative(build_ext):
    """build_ext, then libringpool.so, the interposer, the header and ringpool.pc."""

    def run(self) -> None:
        super().run()
        # RINGPOOL_NATIVE=0: the extensions alone (`make test-py-asan`'s
        # sanitizer build, which tests the bindings and has no use for them).
        if os.environ.get("RINGPOOL_NATIVE") == "0":
            return
        # build_ext builds into build_lib and copies to the sources when in place
        # (editable installs): the native files follow the same way.
        out = os.path.join(self.build_lib, "allocator")
        self._build_native(out)
        if self.inplace:
            src = os.path.join(ROOT, "allocator")
            for sub in ("include", "lib"):
                shutil.rmtree(os.path.join(src, sub), ignore_errors=True)
                shutil.copytree(os.path.join(out, sub), os.path.join(src, sub), symlinks=False)

    def _build_native(self, out: str) -> None:
        f = _flags()
        # The compiler setuptools would use, without Python's own CFLAGS.
        cc = []
        for word in self.compiler.compiler_so:
            if word.startswith("-"):
                break
            cc.append(word)
        lib, pkgconfig, preload = (os.path.join(out, d) for d in ("lib", "lib/pkgconfig", "lib/ringpool"))
        for d in (os.path.join(out, "include"), lib, pkgconfig, preload):
            os.makedirs(d, exist_ok=True)
        core = sorted(glob.glob("csrc/*.c"))
        self.spawn(cc + f["RP_WARN"] + f["RP_OPT"] + f["RP_LIB_CFLAGS"] + ["-shared",
                   "-Wl,-soname,libringpool.so.0", "-o", os.path.join(lib, "libringpool.so.0")]
                   + core + f["RP_LIB_LIBS"])
        # A wheel holds no symbolic links: the linker's name is a copy.
        shutil.copyfile(os.path.join(lib, "libringpool.so.0"), os.path.join(lib, "libringpool.so"))
        self.spawn(cc + f["RP_WARN"] + f["RP_OPT"] + f["RP_PRELOAD_CFLAGS"] + ["-shared",
                   "-Wl,-soname,libringpool-preload.so"] + f["RP_PRELOAD_LDFLAGS"]
                   + ["-o", os.path.join(preload, "libringpool-preload.so")]
                   + sorted(p for pattern in f["RP_PRELOAD_SRCS"] for p in glob.glob(pattern))
                   + f["RP_PRELOAD_LIBS"])
        shutil.copyfile("csrc/include/ringpool.h", os.path.join(out, "include", "ringpool.h"))
        # Relocatable: pkg-config resolves ${pcfiledir} to wherever the package is installed;
        # the rpath lets programs find libringpool.so.0 there at run time.
        with open("ringpool.pc.in", encoding="utf-8") as f_in:
            pc = (f_in.read().replace("@PREFIX@", "${pcfiledir}/../..").replace("@VERSION@", _version())
                  .replace("@RPATH@", "-Wl,-rpath,${libdir} "))
        with open(os.path.join(pkgconfig, "ringpool.pc"), "w", encoding="utf-8") as f_out:
            f_out.write(pc)


setup(
    version=_version(),
    cffi_modules=["allocator/_build.py:ffibuilder", "audit/_bench_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildNative},
    # CPython's allocator hooks (Python-level attribution): plain C API, no cffi.
    # csrc/outfile.c: where a report file may be written, the library's and the interposer's rule.
    ext_modules=[Extension("allocator._pyhooks", ["allocator/_pyhooks.c", "csrc/outfile.c"], libraries=["m"],
                           extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Werror"]),
                 # the native stacks of run --python --native (csrc/stack/)
                 Extension("allocator._pystack", ["allocator/_pystack.c"],
                           extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Werror"])],
)
