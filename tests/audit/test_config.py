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
