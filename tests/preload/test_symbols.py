"""Names are right or say they are unknown.

Checked against binutils, independently of the symbolizer: every outstanding
site named without DWARF must lie inside that function's extent as `nm -S`
gives it, or in the `.eh_frame` function (`readelf --debug-dump=frames`) that
starts at a symbol of that name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zlib
from functools import lru_cache
from pathlib import Path

import pytest

from audit import elfsym, preload
from preload_helpers import marker_line, program, reports, run, site_key, sites_of


@lru_cache(maxsize=None)
def nm_extents(module: str) -> dict[str, list[tuple[int, int]]]:
    found: dict[str, list[tuple[int, int]]] = {}
    for flags in (["-S", "-C", "--defined-only"], ["-D", "-S", "-C", "--defined-only"]):
        proc = subprocess.run(["nm", *flags, module], capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            parts = line.split(maxsplit=3)
            if len(parts) == 4 and len(parts[2]) == 1 and re.fullmatch(r"[0-9a-f]+", parts[1]):
                addr, size, name = int(parts[0], 16), int(parts[1], 16), parts[3]
            else:
                parts = line.split(maxsplit=2)
                if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]+", parts[0]):
                    continue
                addr, size, name = int(parts[0], 16), 0, parts[2]
            found.setdefault(re.sub(r"@@?[\w.]+$", "", name), []).append((addr, size))
    return found


@lru_cache(maxsize=None)
def readelf_fdes(module: str) -> list[tuple[int, int]]:
    proc = subprocess.run(["readelf", "--debug-dump=frames", module], capture_output=True,
                          text=True, check=False)
    return sorted((int(m[1], 16), int(m[2], 16))
                  for m in re.finditer(r"FDE cie=\w+ pc=([0-9a-f]+)\.\.([0-9a-f]+)", proc.stdout))


@lru_cache(maxsize=None)
def readelf_init_array(module: str) -> set[int]:
    """Functions .init_array names, from readelf: its words, or the
    R_X86_64_RELATIVE relocations that fill it."""
    sections = subprocess.run(["readelf", "-SW", module], capture_output=True, text=True).stdout
    m = re.search(r"\.init_array\s+INIT_ARRAY\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", sections)
    if not m:
        return set()
    lo, size = int(m[1], 16), int(m[2], 16)
    found = set()
    relocs = subprocess.run(["readelf", "-rW", module], capture_output=True, text=True).stdout
    for r in re.finditer(r"^([0-9a-f]+)\s+[0-9a-f]+\s+R_X86_64_RELATIVE\s+([0-9a-f]+)", relocs, re.M):
        if lo <= int(r[1], 16) < lo + size:
            found.add(int(r[2], 16))
    dump = subprocess.run(["readelf", "-x", ".init_array", module], capture_output=True, text=True).stdout
    raw = bytes.fromhex("".join("".join(line.split()[1:5]) for line in dump.splitlines()
                                if line.strip().startswith("0x")))
    for i in range(0, len(raw) - 7, 8):
        value = int.from_bytes(raw[i:i + 8], "little")
        if value:
            found.add(value)
    return found


def name_is_right(module: str, addr: int, function: str) -> bool:
    if function == f"static initializer ({os.path.basename(module)})":
        return any(lo <= addr < hi and lo in readelf_init_array(module)
                   for lo, hi in readelf_fdes(module))
    extents = nm_extents(module).get(function, [])
    if any(start <= addr < start + size for start, size in extents):
        return True
    starts = {start for start, _ in extents}
    return any(lo <= addr < hi and lo in starts for lo, hi in readelf_fdes(module))


WORKLOADS = {
    "xz": lambda tmp: ["xz", "-T2", "-c", str(tmp / "in.txt")],
    "perl": lambda tmp: ["perl", "-e", 'my %h; $h{$_} = [$_] for 1 .. 20000; '
                         'our @keep = map { "x" x $_ } 1 .. 500; print scalar(keys %h), "\\n"'],
    "bash": lambda tmp: ["bash", "-c", 'a=(); for i in $(seq 1 2000); do a+=("x$i"); done; '
                         'declare -A m; m[k]=v; echo ${#a[@]}'],
    "gcc": lambda tmp: ["gcc", "-O1", "-c", str(tmp / "unit.c"), "-o", str(tmp / "unit.o")],
}


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_stripped_programs_are_never_named_wrongly(lib: str, tmp_path: Path, name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
    (tmp_path / "in.txt").write_text("".join(f"line {i} {i * 7919 % 10007}\n" for i in range(60000)))
    (tmp_path / "unit.c").write_text("int f(int x) { return x * 3; }\nint g(void) { return f(2); }\n")
    reps = tmp_path / "reports"
    reps.mkdir()
    proc = run(lib, WORKLOADS[name](tmp_path), reps)
    assert proc.returncode == 0, proc.stderr
    found = reports(reps)
    assert found
    checked = unknown = 0
    for rep in found.values():
        symbols = preload.symbolize(rep)
        for site in rep.sites:
            if site.blocks == 0 or not os.path.isfile(site.module):
                continue
            sym = symbols[(site.module, site.offset)]
            if sym.function == "??":
                unknown += 1
                continue
            if sym.file is not None and sym.line is not None:
                continue                      # placed by DWARF (a debug file is installed)
            checked += 1
            assert name_is_right(site.module, site.offset - 1, sym.function), \
                f"{site.module}+{site.offset:#x} named {sym.function!r} outside its extent"
    assert checked + unknown > 0


def test_unknown_addresses_are_module_plus_offset_and_listed(lib: str, tmp_path: Path) -> None:
    """A program stripped of everything: its sites are `??` with module+offset,
    and the report says the module had no symbols."""
    stripped = tmp_path / "gt_stripped"
    subprocess.run(["objcopy", "--strip-all", program("gt_leaks"), str(stripped)], check=True)
    reps = tmp_path / "reports"
    reps.mkdir()
    assert run(lib, [str(stripped)], reps).returncode == 0
    (rep,) = reports(reps).values()
    keys = [r["key"] for r in preload.rows(sites_of(rep, "gt_stripped"), by="function")]
    assert len(keys) == 3 and all(re.fullmatch(r"\?\? \(gt_stripped\+0x[0-9a-f]+\)", k) for k in keys)
    assert preload.modules_without_symbols(rep) == [str(stripped)]


def test_separate_debug_file_found_by_build_id(lib: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    stripped = tmp_path / "gt_debuglinked"
    elf = elfsym.ElfFile.open(program("gt_leaks"))
    build_id = elf.build_id()
    assert build_id, "the test programs are linked with a build id"
    store = tmp_path / "debug" / ".build-id" / build_id[:2]
    store.mkdir(parents=True)
    debug = store / f"{build_id[2:]}.debug"
    subprocess.run(["objcopy", "--only-keep-debug", program("gt_leaks"), str(debug)], check=True)
    subprocess.run(["objcopy", "--strip-all", program("gt_leaks"), str(stripped)], check=True)
    reps = tmp_path / "reports"
    reps.mkdir()
    assert run(lib, [str(stripped)], reps).returncode == 0
    (rep,) = reports(reps).values()
    monkeypatch.setenv(elfsym.DEBUG_DIRS_ENV, str(tmp_path / "debug"))
    preload._cache.clear()
    preload._modules.clear()
    got = {r["key"]: r["bytes"] for r in preload.rows(sites_of(rep, "gt_debuglinked"), by="site")}
    assert got == {site_key("leak_small", "gt_leaks.c", marker_line("gt_leaks.c", "LEAK-A")): 168,
                   site_key("leak_table", "gt_leaks.c", marker_line("gt_leaks.c", "LEAK-B")): 600,
                   site_key("leak_grown", "gt_leaks.c", marker_line("gt_leaks.c", "LEAK-C")): 2000}
    assert preload.modules_without_symbols(rep) == []
    preload._cache.clear()
    preload._modules.clear()


@pytest.mark.parametrize("module", ["/usr/bin/xz", "/usr/bin/bash"])
def test_eh_frame_reader_agrees_with_readelf(module: str) -> None:
    if not os.path.isfile(module):
        pytest.skip(f"{module} is not installed")
    assert elfsym.ElfFile.open(module).fde_ranges() == readelf_fdes(module)


def test_symbol_sizes_agree_with_nm() -> None:
    lzma = "/lib/x86_64-linux-gnu/liblzma.so.5"
    if not os.path.isfile(lzma):
        pytest.skip("liblzma is not installed")
    ours = {(name, value, size) for value, size, name, _ in
            elfsym.ElfFile.open(lzma).function_symbols() if size}
    theirs = {(name, addr, size) for name, spans in nm_extents(lzma).items()
              for addr, size in spans if size}
    assert ours and ours <= theirs


def test_run_says_which_modules_had_no_symbols(tmp_path: Path,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    from audit import cli
    stripped = tmp_path / "gt_nosyms"
    subprocess.run(["objcopy", "--strip-all", program("gt_leaks"), str(stripped)], check=True)
    assert cli.main(["run", "--preload", "--stack-depth", "1", "--by", "function", "--",
                     str(stripped)]) == 0
    err = capfd.readouterr().err
    assert "no symbols for gt_nosyms" in err and "?? (gt_nosyms+0x" in err


def test_installed_debug_package_gives_real_names_and_lines(lib: str, tmp_path: Path) -> None:
    """libc6-dbg (installed by make setup-sys) puts libc's debug file under
    /usr/lib/debug/.build-id: found by build id, it gives functions and lines."""
    reps = tmp_path / "reports"
    reps.mkdir()
    assert run(lib, [program("startup")], reps).returncode == 0
    (rep,) = reports(reps).values()
    libc = next(m for m in rep.modules if os.path.basename(m.path).startswith("libc.so"))
    assert libc.build_id
    if elfsym.find_debug_file(libc.path, libc.build_id, None) is None:
        pytest.skip("libc's debug file (libc6-dbg) is not installed")
    symbols = preload.symbolize(rep)
    named = [symbols[(s.module, s.offset)] for s in rep.sites if s.module == libc.path]
    assert named and all(sym.file and sym.line for sym in named)
    assert libc.path not in preload.modules_without_symbols(rep)


DEBUGLINK_C = """
__attribute__((noinline)) int NAME_a(int x) { return x * 3 + 1; }
__attribute__((noinline)) int NAME_b(int x) { return NAME_a(x) - 7; }
int main(int argc, char **argv) { (void)argv; return NAME_b(argc); }
"""


def test_a_debug_file_of_another_build_is_not_used(tmp_path: Path) -> None:
    # A debug file found by .gnu_debuglink name was used without gdb's check of the CRC
    # the link gives: one left beside a rebuilt program (or one a link names on purpose)
    # named every address by another build's functions. A link's name holding '/' was
    # followed anywhere (an absolute path, ../../). Without build ids, as the CRC is then
    # all there is.
    def build(name: str, prefix: str) -> Path:
        src = tmp_path / f"{name}.c"
        src.write_text(DEBUGLINK_C.replace("NAME", prefix))
        out = tmp_path / name
        subprocess.run(["cc", "-g", "-O0", "-Wl,--build-id=none", str(src), "-o", str(out)], check=True)
        return out

    mine, other = build("mine", "right"), build("other", "wrong")
    addrs = [addr for name, ((addr, _),) in sorted(nm_extents(str(mine)).items())
             if name in ("right_a", "right_b")]
    assert len(addrs) == 2 and nm_extents(str(other))["wrong_a"][0][0] == addrs[0]
    debug = tmp_path / "mine.debug"
    subprocess.run(["objcopy", "--only-keep-debug", str(mine), str(debug)], check=True)
    stripped = tmp_path / "mine.stripped"
    subprocess.run(["objcopy", "--strip-all", "--add-gnu-debuglink", str(debug), str(mine), str(stripped)],
                   check=True)

    def names() -> list[str]:
        info = elfsym.load_module(str(stripped), None)
        return [n.function for n in elfsym.name_addresses(info, addrs)]

    assert names() == ["right_a", "right_b"]
    subprocess.run(["objcopy", "--only-keep-debug", str(other), str(debug)], check=True)
    assert names() == ["??", "??"]
    # a link naming another directory's file is not followed there
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(["objcopy", "--only-keep-debug", str(mine), str(elsewhere / "mine.debug")], check=True)
    linked = tmp_path / "linked"
    subprocess.run(["objcopy", "--strip-all", str(mine), str(linked)], check=True)
    section = tmp_path / "link.bin"
    crc = zlib.crc32((elsewhere / "mine.debug").read_bytes())     # the right one: the name alone is refused
    section.write_bytes(b"elsewhere/mine.debug\0\0\0\0" + crc.to_bytes(4, "little"))
    subprocess.run(["objcopy", "--add-section", f".gnu_debuglink={section}", str(linked)], check=True)
    assert elfsym.ElfFile.open(str(linked)).debuglink() == "elsewhere/mine.debug"
    assert elfsym.ElfFile.open(str(linked)).debuglink_crc() == crc
    info = elfsym.load_module(str(linked), None)
    assert info.debug_file is None and [n.function for n in elfsym.name_addresses(info, addrs)] == ["??", "??"]


def test_the_delimited_answers_are_the_usual_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    # The path a name holding a newline sends a module down (addr2line asked again, each
    # address between queries of a random address) names every address as the usual one.
    module = program("gt_leaks")
    info = elfsym.load_module(module, None)
    assert info.dwarf_file is not None
    addrs = sorted({a + d for a, _ in elfsym.ElfFile.open(module).fde_ranges() for d in (0, 5, 17)})
    usual = elfsym.name_addresses(info, addrs)
    plain = elfsym._run_addr2line

    def longer(args: list[str], queried: list[int]) -> str | None:
        out = plain(args, queried)
        return out + "\n" if out is not None and args[0] == "-f" else out

    monkeypatch.setattr(elfsym, "_run_addr2line", longer)
    assert elfsym.name_addresses(info, addrs) == usual
    assert sum(n.line is not None for n in usual) > len(addrs) // 2
