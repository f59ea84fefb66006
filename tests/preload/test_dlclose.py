"""dlclose, then another library at the same address: blocks from the first
keep its name, its build id and its offsets; the two never merge."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from audit import cli, elfsym, preload
from preload_helpers import marker_line, only_report, program, run, site_key

PLUGIN_A_SRC = "libs/plugin_a.c"
PLUGIN_B_SRC = "libs/plugin_b.c"


def swap(lib: str, tmp: Path, depth: str) -> tuple[preload.PreloadReport, str, str, int]:
    a, b = program("libplugin_a.so"), program("libplugin_b.so")
    proc = run(lib, [program("dlswap"), a, b], tmp, env={"RINGPOOL_PRELOAD_STACK_DEPTH": depth})
    assert proc.returncode == 0, proc.stderr
    m = re.fullmatch(rb"a (0x[0-9a-f]+) b (0x[0-9a-f]+) tries (\d+)\n", proc.stdout)
    assert m, proc.stdout
    # the scenario itself: the second library took the first one's addresses
    assert m[1] == m[2]
    return only_report(tmp), a, b, int(m[3])


@pytest.mark.parametrize("depth", ["1", "64"])
def test_unloaded_module_keeps_its_sites(lib: str, tmp_path: Path, depth: str) -> None:
    rep, a, b, tries = swap(lib, tmp_path, depth)
    # a retry (B mapped elsewhere, so unloaded and opened again) leaves an
    # unloaded entry for B beside the live one: look at every entry per path
    entries_a = [m for m in rep.modules if m.path == a]
    entries_b = [m for m in rep.modules if m.path == b]
    assert entries_a and all(m.unloaded for m in entries_a)
    assert sum(not m.unloaded for m in entries_b) == 1
    assert all(m.build_id == elfsym.ElfFile.open(a).build_id() for m in entries_a)
    plugin = preload.PreloadReport(rep.path, rep.pid, rep.exe, rep.taken_at, rep.reason,
                                   rep.totals, rep.modules,
                                   tuple(s for s in rep.sites if s.module in (a, b)))
    got = {r["key"]: (r["blocks"], r["bytes"]) for r in preload.rows(plugin, by="site")}
    assert got == {
        site_key("plugin_a_leak", PLUGIN_A_SRC, marker_line(PLUGIN_A_SRC, "LEAK-PLUGIN-A")):
            (3 * tries, 300 * tries),
        site_key("plugin_b_leak", PLUGIN_B_SRC, marker_line(PLUGIN_B_SRC, "LEAK-PLUGIN-B")): (5, 35),
    }
    by_module = {r["key"]: r["bytes"] for r in preload.rows(plugin, by="module")}
    assert by_module == {a: 300 * tries, b: 35}


def test_cli_names_the_unloaded_module(capfd: pytest.CaptureFixture[str]) -> None:
    a, b = program("libplugin_a.so"), program("libplugin_b.so")
    assert cli.main(["run", "--preload", "--by", "function", "--", program("dlswap"), a, b]) == 0
    err = capfd.readouterr().err
    rows = {line.split()[0] for line in err.splitlines() if line.startswith("plugin_")}
    assert rows == {"plugin_a_leak", "plugin_b_leak"}


def test_unloaded_flag_is_checked(tmp_path: Path) -> None:
    doc = ('{"format": "ringpool-preload", "version": 1, "pid": 1, "exe": "/x", '
           '"taken_at": "2026-01-01T00:00:00Z", "reason": "exit", '
           '"totals": {"blocks": 0, "bytes": 0, "allocs": 0}, '
           '"modules": [{"path": "/x", "base": "0x0", "unloaded": "yes"}], "sites": []}')
    path = tmp_path / "r.json"
    path.write_text(doc)
    with pytest.raises(ValueError, match=r"modules\[0\]: field 'unloaded'"):
        preload.load(str(path))


def test_unload_path_is_ubsan_clean(tmp_path: Path) -> None:
    import os
    from preload_helpers import REPO
    ubsan = os.environ.get("RINGPOOL_PRELOAD_UBSAN_LIB",
                           str(REPO / "build" / "libringpool-preload-ubsan.so"))
    proc = run(ubsan, [program("dlswap"), program("libplugin_a.so"), program("libplugin_b.so")],
               tmp_path, env={"RINGPOOL_PRELOAD_STACK_DEPTH": "64"})
    assert proc.returncode == 0 and b"runtime error" not in proc.stderr, proc.stderr
    assert any(m.unloaded for m in only_report(tmp_path).modules)


@pytest.mark.parametrize("depth", ["1", "64"])
@pytest.mark.parametrize("build", ["plain", "ubsan"])
def test_dependency_unloaded_with_its_dependent_keeps_its_sites(lib: str, tmp_path: Path, depth: str,
                                                                build: str) -> None:
    """dlclose of a library also unmaps the dependency only it needed,
    which the handle does not name: that dependency's blocks keep its
    name and build id when another library is mapped where it was (they
    used to be named by the other library's code at the same offsets,
    and the frame of the dependency in a whole stack too)."""
    if build == "ubsan":
        import os
        from preload_helpers import REPO
        lib = os.environ.get("RINGPOOL_PRELOAD_UBSAN_LIB",
                             str(REPO / "build" / "libringpool-preload-ubsan.so"))
    top, helper = program("libdep_top.so"), program("libdep_helper.so")
    other, filler = program("libplugin_b.so"), program("libplugin_a.so")
    proc = run(lib, [program("depswap"), top, other, filler], tmp_path,
               env={"RINGPOOL_PRELOAD_STACK_DEPTH": depth})
    assert proc.returncode == 0 and b"runtime error" not in proc.stderr, proc.stderr
    m = re.fullmatch(rb"helper (0x[0-9a-f]+) other (0x[0-9a-f]+) tries (\d+)\n", proc.stdout)
    assert m, proc.stdout
    assert m[1] == m[2]     # the scenario: the other library took the dependency's addresses
    tries = int(m[3])
    rep = only_report(tmp_path)
    entries = [e for e in rep.modules if e.path == helper]
    assert len(entries) == tries and all(e.unloaded for e in entries)
    assert all(e.build_id == elfsym.ElfFile.open(helper).build_id() for e in entries)
    assert all(e.unloaded for e in rep.modules if e.path == top)
    mine = preload.PreloadReport(rep.path, rep.pid, rep.exe, rep.taken_at, rep.reason, rep.totals,
                                 rep.modules, tuple(s for s in rep.sites if s.module in (helper, other)))
    got = {r["key"]: (r["blocks"], r["bytes"]) for r in preload.rows(mine, by="site")}
    assert got == {
        site_key("dep_helper_leak", "libs/dep_helper.c", marker_line("libs/dep_helper.c", "LEAK-DEP-HELPER")):
            (3 * tries, 300 * tries),
        site_key("plugin_b_leak", PLUGIN_B_SRC, marker_line(PLUGIN_B_SRC, "LEAK-PLUGIN-B")): (5, 35),
    }
    if depth == "64":
        # the helper's frame is followed by the top library's, in every stack
        for s in mine.sites:
            if s.module == helper:
                assert [mod for mod, _ in s.frames()[:2]] == [helper, top], s.frames()


def reload_run(lib: str, tmp: Path, depth: str, close: str) -> tuple[preload.PreloadReport, str]:
    """dlreload: plugin A at a path, unloaded, replaced on disk by plugin B (another
    build id), which is loaded from the same path."""
    plugins = tmp / "plugins"
    plugins.mkdir()
    where = str(plugins / "libplug.so")
    proc = run(lib, [program("dlreload"), where, program("libplugin_a.so"),
                     program("libplugin_b.so"), close], tmp,
               env={"RINGPOOL_PRELOAD_STACK_DEPTH": depth})
    assert proc.returncode == 0, proc.stderr
    rep = only_report(tmp)
    return preload.PreloadReport(rep.path, rep.pid, rep.exe, rep.taken_at, rep.reason, rep.totals,
                                 rep.modules, tuple(s for s in rep.sites if s.module.startswith(where)),
                                 rep.stack_depth), where


@pytest.mark.parametrize("close", ["close", "keep"])
@pytest.mark.parametrize("depth", ["1", "64"])
def test_a_library_replaced_on_disk_and_loaded_again_from_its_path(
        lib: str, tmp_path: Path, depth: str, close: str) -> None:
    """A plugin rebuilt and loaded again from the same path: the report has two
    modules of one path and two build ids. The old code's sites were named by the
    new file's functions (plugin_a_leak's 3 blocks counted as plugin_b_leak's when
    both were unloaded), or the new code's by nothing: the modules went by path alone.
    Each is now a module of its own, named with its build id, symbolized by that id:
    the old one unknown (no file has its build id), the new one by the file."""
    rep, where = reload_run(lib, tmp_path, depth, close)
    id_a = elfsym.ElfFile.open(program("libplugin_a.so")).build_id()
    id_b = elfsym.ElfFile.open(program("libplugin_b.so")).build_id()
    assert id_a and id_b and id_a != id_b
    got = {r["key"]: (r["blocks"], r["bytes"]) for r in preload.rows(rep, by="site")}
    b_key = site_key("plugin_b_leak", PLUGIN_B_SRC, marker_line(PLUGIN_B_SRC, "LEAK-PLUGIN-B"))
    assert got.pop(b_key) == (5, 35)
    # the old code's: unknown, named by its module (path and build id) and offset
    assert len(got) == 1 and next(iter(got.values())) == (3, 300)
    assert next(iter(got)).startswith("?? (") and f"(build id {id_a})+0x" in next(iter(got))
    by_module = {r["key"]: r["bytes"] for r in preload.rows(rep, by="module")}
    assert by_module == {f"{where} (build id {id_a})": 300, f"{where} (build id {id_b})": 35}


def test_a_replaced_library_is_named_by_its_build_id_from_a_debug_directory(
        lib: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old code of a replaced library is named when a debug directory holds a file
    of its build id, and the new code by the file at the path."""
    rep, _ = reload_run(lib, tmp_path, "64", "close")
    id_a = elfsym.ElfFile.open(program("libplugin_a.so")).build_id()
    assert id_a
    debug = tmp_path / "debug" / ".build-id" / id_a[:2]
    debug.mkdir(parents=True)
    (debug / f"{id_a[2:]}.debug").write_bytes(Path(program("libplugin_a.so")).read_bytes())
    monkeypatch.setenv(elfsym.DEBUG_DIRS_ENV, str(tmp_path / "debug"))
    got = {r["key"]: (r["blocks"], r["bytes"]) for r in preload.rows(rep, by="site")}
    assert got == {
        site_key("plugin_a_leak", PLUGIN_A_SRC, marker_line(PLUGIN_A_SRC, "LEAK-PLUGIN-A")): (3, 300),
        site_key("plugin_b_leak", PLUGIN_B_SRC, marker_line(PLUGIN_B_SRC, "LEAK-PLUGIN-B")): (5, 35),
    }


@pytest.mark.parametrize("where", ["plain", "new\nline", "lit\\012x", "sp ace"])
def test_libraries_loaded_by_a_relative_name_are_written_with_their_absolute_path(
        lib: str, tmp_path: Path, where: str) -> None:
    """dlopen("./libx.so") and LD_PRELOAD=x/y.so leave the loader a relative name,
    which the report wrote as it was: relative to the directory the program ran in
    (or had gone to), not to the reader's, so the reader found nothing there, or
    another file of that name. The report now writes the absolute path of the file
    mapped there when that path names it still (the same device and inode; the
    kernel's maps write a newline as \\012), for loaded and for unloaded objects."""
    run_in = tmp_path / where
    run_in.mkdir()
    for name in ("libplugin_a.so", "libplugin_b.so"):
        shutil.copy(program(name), run_in / name)
    reports = tmp_path / "reports"
    reports.mkdir()
    proc = run(lib, [program("dlswap"), "./libplugin_a.so", "./libplugin_b.so"], reports,
               env={"RINGPOOL_PRELOAD_STACK_DEPTH": "64"}, cwd=str(run_in))
    assert proc.returncode == 0, proc.stderr
    rep = only_report(reports)
    a, b = str(run_in / "libplugin_a.so"), str(run_in / "libplugin_b.so")
    assert {m.path for m in rep.modules if "libplugin" in m.path} == {a, b}
    assert all(m.unloaded for m in rep.modules if m.path == a)
    mine = preload.PreloadReport(rep.path, rep.pid, rep.exe, rep.taken_at, rep.reason, rep.totals,
                                 rep.modules, tuple(s for s in rep.sites if s.module in (a, b)))
    assert os.getcwd() != str(run_in)
    got = {r["key"].split(" (")[0]: r["bytes"] for r in preload.rows(mine, by="function")}
    assert got == {"plugin_a_leak": 300 * int(proc.stdout.split()[-1]), "plugin_b_leak": 35}
