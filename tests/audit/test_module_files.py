"""What the symbolizer does with the module files an interposer report names: a
file it would have to read whole past any size, a path into /proc (dlopen of a
memfd_create'd object), one path holding two builds of a library, and a program
replaced on disk while it ran."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from _audit_testlib import c_compiler
from audit import elfsym, preload

REPLACED_SRC = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>
/* Puts the file argv[1] at its own path (a new file renamed over it, as an
   install does), then leaks one block from leak_here. */
__attribute__((noinline)) void *leak_here(size_t n) { return malloc(n); }
int main(int argc, char **argv)
{
    char self[4096], tmp[4200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (argc < 2 || n <= 0)
        return 2;
    self[n] = 0;
    snprintf(tmp, sizeof tmp, "%s.new", self);
    FILE *in = fopen(argv[1], "rb"), *out = fopen(tmp, "wb");
    if (!in || !out)
        return 3;
    char buf[1 << 14];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, k, out);
    if (fclose(in) || fclose(out) || chmod(tmp, 0755) || rename(tmp, self))
        return 4;
    static void *keep;
    keep = leak_here(77 + VERSION);
    return keep == NULL;
}
"""

LIB_SRC = """
int victim_function(int x)
{
    int y = x * 3;
    y += x / 7;
    return y + 1;
}
"""


def build_lib(tmp: Path, *extra: str, name: str = "libvictim.so",
              function: str = "victim_function") -> tuple[Path, int]:
    """A shared object and the offset of an address inside its function."""
    (tmp / "victim.c").write_text(LIB_SRC.replace("victim_function", function), encoding="utf-8")
    out = tmp / name
    subprocess.run([c_compiler(), "-O0", "-g", "-fPIC", "-shared", *extra, "-o", str(out),
                    str(tmp / "victim.c")], check=True)
    nm = subprocess.run(["nm", "-S", str(out)], capture_output=True, text=True, check=True).stdout
    m = re.search(rf"^([0-9a-f]+) ([0-9a-f]+) T {function}$", nm, re.M)
    assert m, nm
    return out, int(m[1], 16) + int(m[2], 16) // 2


def report(tmp: Path, modules: list[dict[str, Any]], sites: list[tuple[int, int, int]]) -> Path:
    """An interposer report: sites (module index, offset, bytes), each with a one-frame stack."""
    doc = {"format": "ringpool-preload", "version": 1, "pid": 1, "exe": "/x",
           "taken_at": "2026-01-01T00:00:00Z", "reason": "exit",
           "totals": {"blocks": len(sites), "bytes": sum(s[2] for s in sites), "allocs": len(sites)},
           "modules": modules,
           "sites": [{"module": modules[m]["path"], "offset": hex(off), "blocks": 1, "bytes": n,
                      "allocs": 1, "stack": i} for i, (m, off, n) in enumerate(sites)],
           "stack_depth": 1, "stacks": [[i] for i in range(len(sites))],
           "frames": [[m, hex(off)] for m, off, _ in sites]}
    path = tmp / "r.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def show(path: Path, *args: str, pass_fds: tuple[int, ...] = (),
         limit_memory: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if limit_memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_memory, limit_memory))
    return subprocess.run([sys.executable, "-m", "audit", "show", str(path), "--format", "json", *args],
                          capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL, pass_fds=pass_fds, preexec_fn=limit)


def keys(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert proc.returncode == 0, proc.stderr
    return {r["key"]: r["bytes"] for r in json.loads(proc.stdout)["rows"]}


def test_a_module_file_too_large_to_read_is_left_unread(tmp_path: Path) -> None:
    """A module file is read whole once its ELF header is: a sparse file of 6 GiB
    behind a real object's bytes filled the memory (MemoryError under a 2 GiB limit,
    the command's traceback). Past MAX_OBJECT_BYTES a file is not read: the site
    shows as module+offset."""
    lib, off = build_lib(tmp_path)
    huge = tmp_path / "libhuge.so"
    huge.write_bytes(lib.read_bytes())
    os.truncate(huge, 6 << 30)
    path = report(tmp_path, [{"path": str(huge), "base": "0x7f0000000000"}], [(0, off, 10)])
    proc = show(path, "--by", "function", limit_memory=2 << 30)
    assert keys(proc) == {f"?? (libhuge.so+{off:#x})": 10}
    # the same object under the limit is read and named
    path = report(tmp_path, [{"path": str(lib), "base": "0x7f0000000000"}], [(0, off, 10)])
    assert keys(show(path, "--by", "function")) == {"victim_function": 10}


def test_a_module_named_by_a_descriptor_is_not_the_readers(tmp_path: Path) -> None:
    """dlopen of a memfd_create'd object (code made at run time) names it
    /proc/self/fd/N, and the report says so; the symbolizer opened that path in its
    own process, its own descriptor N, and named the program's code by whatever
    object that was (here one without a build id to tell them apart). Paths into
    /proc, through /dev/fd or a link, are not read: the site is module+offset."""
    lib, off = build_lib(tmp_path, "-Wl,--build-id=none")
    assert elfsym.ElfFile.open(str(lib)).build_id() is None
    (tmp_path / "link").symlink_to("/dev/fd")
    fd = os.open(lib, os.O_RDONLY)
    try:
        for named in (f"/proc/self/fd/{fd}", f"/dev/fd/{fd}", f"{tmp_path}/link/{fd}",
                      f"/proc/{os.getpid()}/fd/{fd}"):
            path = report(tmp_path, [{"path": named, "base": "0x7f0000000000"}], [(0, off, 10)])
            got = keys(show(path, "--by", "function", pass_fds=(fd,)))
            assert got == {f"?? ({os.path.basename(named)}+{off:#x})": 10}, named
    finally:
        os.close(fd)
    # the same file by its path is named
    path = report(tmp_path, [{"path": str(lib), "base": "0x7f0000000000"}], [(0, off, 10)])
    assert keys(show(path, "--by", "function")) == {"victim_function": 10}


def test_two_builds_of_one_path_are_two_modules(tmp_path: Path) -> None:
    """A library loaded, unloaded, rebuilt and loaded again from its path: two
    modules of one path, two build ids. By path alone they were one module, and the
    old build's sites were named with the file the path holds now (another build:
    its functions at those offsets)."""
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    old, off = build_lib(old_dir, "-Wl,--build-id=sha1", function="old_function")
    new, off_new = build_lib(new_dir, "-Wl,--build-id=sha1", function="new_function")
    id_old, id_new = elfsym.ElfFile.open(str(old)).build_id(), elfsym.ElfFile.open(str(new)).build_id()
    assert id_old and id_new and id_old != id_new and off == off_new
    at = str(new)                        # the path both were loaded from: the new build is there now
    modules: list[dict[str, Any]] = [{"path": at, "base": "0x7f0000000000", "build_id": id_new},
                                     {"path": at, "base": "0x7f0000100000", "build_id": id_old,
                                      "unloaded": True}]
    path = report(tmp_path, modules, [(0, off, 10), (1, off, 300)])
    assert keys(show(path, "--by", "function")) == {
        f"?? ({os.path.basename(at)} (build id {id_old})+{off:#x})": 300, "new_function": 10}
    assert keys(show(path, "--by", "module")) == {f"{at} (build id {id_old})": 300,
                                                  f"{at} (build id {id_new})": 10}
    rep = preload.load(str(path))
    assert [m.on_disk for m in rep.modules] == [at, at]
    # with the old build's file in a debug directory, each build is named by its own file
    debug = tmp_path / "debug" / ".build-id" / id_old[:2]
    debug.mkdir(parents=True)
    os.link(old, debug / f"{id_old[2:]}.debug")
    env_path = report(tmp_path, modules, [(0, off, 10), (1, off, 300)])
    proc = subprocess.run([sys.executable, "-m", "audit", "show", str(env_path), "--format", "json",
                           "--by", "site"], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, elfsym.DEBUG_DIRS_ENV: str(tmp_path / "debug")})
    got = {k.split(":")[0]: n for k, n in keys(proc).items()}
    assert got == {f"old_function ({old_dir}/victim.c": 300, f"new_function ({new_dir}/victim.c": 10}


def test_a_program_replaced_on_disk_while_it_ran(tmp_path: Path) -> None:
    """A program whose file is replaced while it runs (an install, a rebuild) is named
    "PATH (deleted)" by /proc/self/exe, the report's module path for it: no file has
    that name, and every frame of the program showed as module+offset, with a hint to
    install debug files. The file now at PATH is read when it has the report's build
    id (the same program installed again); another build leaves the frames unknown."""
    src = tmp_path / "replaced.c"
    src.write_text(REPLACED_SRC, encoding="utf-8")
    builds = {}
    for version in (0, 1):
        out = tmp_path / f"build{version}"
        subprocess.run([c_compiler(), "-O0", "-g", f"-DVERSION={version}", "-o", str(out), str(src)],
                       check=True)
        builds[version] = out
    for put, named in ((0, True), (1, False)):
        prog = tmp_path / f"prog{put}"
        prog.write_bytes(builds[0].read_bytes())
        prog.chmod(0o755)
        reports = tmp_path / f"reports{put}"
        reports.mkdir()
        env = {**os.environ, "LD_PRELOAD": preload.library_path(),
               "RINGPOOL_PRELOAD_REPORT": str(reports / "r.json")}
        proc = subprocess.run([str(prog), str(builds[put])], env=env, capture_output=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert any(m.path == f"{prog} (deleted)" for m in preload.load(str(reports / "r.json")).modules)
        got = {k.split(" (")[0] for k in keys(show(reports / "r.json", "--by", "function"))}
        if named:
            assert "leak_here" in got, got
        else:
            assert "leak_here" not in got and "??" in got, got


def test_a_module_path_holding_a_nul_is_an_unknown_module(tmp_path: Path) -> None:
    """No file has a name holding NUL (a report written by hand can say one): opening it
    raised ValueError ('embedded null byte'), and show refused the whole report. Such a
    module's sites are module+offset, the rest of the report as it was."""
    lib, off = build_lib(tmp_path)
    modules: list[dict[str, Any]] = [{"path": f"{tmp_path}/lib\0x.so", "base": "0x7f0000000000"},
                                     {"path": str(lib), "base": "0x7f0000100000"}]
    path = report(tmp_path, modules, [(0, off, 10), (1, off, 20)])
    got = keys(show(path, "--by", "function"))
    assert got == {f"?? (lib\0x.so+{off:#x})": 10, "victim_function": 20}, got


def test_a_relative_module_path_is_read_only_against_a_build_id(tmp_path: Path) -> None:
    """A relative module path (an object loaded by a relative name whose file was gone
    at report time, or a report of an older interposer) is relative to the program's
    directory, not the reader's. The symbolizer read whatever file had that name in its
    own working directory and, without a build id to check, named the program's code
    by it. Now such a path is read only when the report gives a build id to check."""
    lib, off = build_lib(tmp_path, "-Wl,--build-id=sha1")
    build_id = elfsym.ElfFile.open(str(lib)).build_id()
    for given, named in ((None, False), (build_id, True), ("00" * 20, False)):
        module: dict[str, Any] = {"path": lib.name, "base": "0x7f0000000000"}
        if given:
            module["build_id"] = given
        path = report(tmp_path, [module], [(0, off, 10)])
        proc = subprocess.run([sys.executable, "-m", "audit", "show", str(path), "--format", "json",
                               "--by", "function"], capture_output=True, text=True, timeout=300,
                              check=False, cwd=tmp_path, stdin=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(Path(elfsym.__file__).parents[1])})
        assert keys(proc) == ({"victim_function": 10} if named else {f"?? ({lib.name}+{off:#x})": 10}), given
