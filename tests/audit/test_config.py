"""`config` / `python -m allocator`: flags and paths of the native files that come
with the package, and where the interposer is looked for (allocator.config)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import allocator
from allocator import config
from audit.cli import main


def test_cflags_and_libs_point_into_the_package(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--cflags", "--libs"]) == 0
    words = capsys.readouterr().out.split()
    pkg = os.path.dirname(os.path.abspath(allocator.__file__))
    assert words == [f"-I{pkg}/include", f"-L{pkg}/lib", f"-Wl,-rpath,{pkg}/lib", "-lringpool"]
    assert os.path.isfile(os.path.join(pkg, "include", "ringpool.h"))
    assert os.path.isfile(os.path.join(pkg, "lib", "libringpool.so"))


def test_python_m_allocator_prints_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--cflags", "--libs"]) == 0
    expected = capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "allocator", "--cflags", "--libs"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == expected


def test_paths_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--includedir", "--pkgconfigdir", "--version"]) == 0
    include, pkgconfig, version = capsys.readouterr().out.splitlines()
    assert Path(include, "ringpool.h").is_file() and Path(pkgconfig, "ringpool.pc").is_file()
    assert version == allocator.__version__


def test_version_is_the_headers() -> None:
    header = Path(config.include_dir(), "ringpool.h").read_text(encoding="utf-8")
    parts = [line.split()[2] for line in header.splitlines()
             if line.startswith("#define RINGPOOL_VERSION_")]
    assert allocator.__version__ == ".".join(parts)
    import audit
    assert audit.__version__ == allocator.__version__


def test_nothing_asked_for_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 1
    assert "nothing asked for" in capsys.readouterr().err


def test_preload_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "libringpool-preload.so"
    lib.write_bytes(b"")
    monkeypatch.setenv("RINGPOOL_PRELOAD_LIB", str(lib))
    assert config.preload_library() == str(lib)


def test_preload_env_naming_a_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RINGPOOL_PRELOAD_LIB", str(tmp_path / "none.so"))
    with pytest.raises(FileNotFoundError, match=r"RINGPOOL_PRELOAD_LIB names a file that does not exist"):
        config.preload_library()
    assert main(["config", "--preload"]) == 1
    assert "none.so" in capsys.readouterr().err


def _fake_package(tmp_path: Path, checkout: bool) -> Path:
    """A copy of allocator/config.py in a package directory of its own."""
    root = tmp_path / "root"
    pkg = root / "allocator"
    pkg.mkdir(parents=True)
    shutil.copy(config.__file__, pkg / "config.py")
    if checkout:
        (root / "Makefile").write_text("")
        (root / "csrc" / "preload").mkdir(parents=True)
    return pkg


def _lookup(pkg: Path) -> subprocess.CompletedProcess[str]:
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('cfg', {str(pkg / 'config.py')!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "try:\n    print(m.preload_library())\n"
            "except FileNotFoundError as e:\n    print('ERROR', e); sys.exit(1)\n")
    env = {k: v for k, v in os.environ.items() if k != "RINGPOOL_PRELOAD_LIB"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)


def test_installed_package_uses_its_own_copy_or_says_reinstall(tmp_path: Path) -> None:
    pkg = _fake_package(tmp_path, checkout=False)
    proc = _lookup(pkg)
    assert proc.returncode == 1 and "missing from the installed ringpool package; reinstall" in proc.stdout
    lib = pkg / "lib" / "ringpool" / "libringpool-preload.so"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"")
    assert _lookup(pkg).stdout.strip() == str(lib)


def test_checkout_prefers_build_then_package_copy_or_says_make_preload(tmp_path: Path) -> None:
    pkg = _fake_package(tmp_path, checkout=True)
    proc = _lookup(pkg)
    assert proc.returncode == 1 and "make preload" in proc.stdout
    packaged = pkg / "lib" / "ringpool" / "libringpool-preload.so"
    packaged.parent.mkdir(parents=True)
    packaged.write_bytes(b"")
    assert _lookup(pkg).stdout.strip() == str(packaged)
    built = pkg.parent / "build" / "libringpool-preload.so"
    built.parent.mkdir()
    built.write_bytes(b"")
    assert _lookup(pkg).stdout.strip() == str(built)


# ------------------------------------------------ a package under a hostile directory name
# Names a virtual environment may live under: a space ("My Projects"), quotes, '$', shell
# metacharacters, non-ASCII, a leading '-'.
HOSTILE_DIRS = ["My Projects", "it's", 'say "hi"', "$HOME x", "a;b&c|d", "(x)*?[y]", "tab\there",
                "back\\slash", "é 日本", "-lead", "#hash", "~tilde", "`tick`"]


def _render(pkg: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('cfg', {str(pkg / 'config.py')!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "sys.exit(m.main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", code, *flags], capture_output=True, text=True,
                          check=False)


@pytest.mark.parametrize("name", HOSTILE_DIRS)
def test_flags_are_read_back_by_the_shell_as_the_package_paths(tmp_path: Path, name: str) -> None:
    # `config --cflags --libs` joined the paths with spaces, unquoted: under "My Projects" the
    # shell (eval, a Makefile's recipe) read '-I/.../My' and 'Projects/...', and cc found no
    # ringpool.h. Each word is now escaped as pkg-config escapes its output.
    pkg = _fake_package(tmp_path / name, checkout=False)
    (pkg / "include").mkdir()
    (pkg / "include" / "ringpool.h").write_text("")
    (pkg / "lib").mkdir()
    (pkg / "lib" / "libringpool.so").write_text("")
    proc = _render(pkg, "--cflags", "--libs")
    assert proc.returncode == 0, proc.stderr
    line, = proc.stdout.splitlines()
    back = subprocess.run(["sh", "-c", f'for w in {line}; do printf "%s\\0" "$w"; done'],
                          capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    assert back == [f"-I{pkg}/include", f"-L{pkg}/lib", f"-Wl,-rpath,{pkg}/lib", "-lringpool"]
    # a make recipe reads them so too
    (tmp_path / "Makefile").write_text(f"FLAGS := $(shell cat flags)\nall:\n\t@for w in $(FLAGS); "
                                       "do printf '%s\\0' \"$$w\"; done\n")
    (tmp_path / "flags").write_text(line)
    made = subprocess.run(["make", "-s", "-C", str(tmp_path)], capture_output=True, text=True,
                          check=False)
    if "#" not in name:                  # make's $(shell) reads '#' as a comment's start
        assert made.stdout.split("\0")[:-1] == back, made


@pytest.mark.parametrize("name", ["co:lon", "it's", "$x", "(x)", "b\\s"])
def test_what_pkg_config_or_the_loader_cannot_read_is_refused(tmp_path: Path, name: str) -> None:
    # A library directory holding ':' went into -Wl,-rpath, which the loader splits at ':':
    # the program built exited 127 ("libringpool.so.0: cannot open shared object file").
    # pkgconf printed no flags at all for a ${pcfiledir} holding a quote, and the shell
    # expanded a '$' in it: --pkgconfigdir handed out a directory pkg-config cannot use.
    pkg = _fake_package(tmp_path / name, checkout=False)
    (pkg / "include").mkdir()
    (pkg / "include" / "ringpool.h").write_text("")
    (pkg / "lib" / "pkgconfig").mkdir(parents=True)
    (pkg / "lib" / "libringpool.so").write_text("")
    (pkg / "lib" / "pkgconfig" / "ringpool.pc").write_text("")
    if ":" in name:
        proc = _render(pkg, "--libs")
        assert proc.returncode == 1 and proc.stdout == "", proc
        assert proc.stderr.count("\n") == 1 and "holds ':'" in proc.stderr, proc.stderr
    else:
        assert _render(pkg, "--libs").returncode == 0
    proc = _render(pkg, "--pkgconfigdir")
    assert proc.returncode == 1 and proc.stdout == "", proc
    assert proc.stderr.count("\n") == 1 and "use `config --cflags --libs` instead" in proc.stderr
    assert _render(pkg, "--cflags").returncode == 0
