#!/usr/bin/env python3
"""An interposer report with many distinct stacks, for timing `ringpool-audit show`.

Two layouts:

- ``program`` (the default): the stacks of a program of its own. Five modules (a
  position-independent executable and four shared libraries, 4,200 functions in 60
  source files, generated and built with ``cc -g -O0`` into ``OUT.modules/``), each
  function with four call sites. A stack is a walk from ``main`` through dispatch
  layers to a leaf, 8 to 16 frames: the outer frames are shared by many stacks, as
  in a real program, the inner ones spread. Most leaves are allocation wrappers
  (``xmalloc``, ``xstrdup``, ``xrealloc``, ``g_malloc``), so rows are credited past
  them, and one stack in twenty starts in no module (``?``: generated code). Every
  frame is named by DWARF (function and file:line).
- ``bare``: the layout of the earlier 10,000-stack measurement (docs/cli.md): N + 8
  addresses in no module, stack i = [i, N, N+1, ..., N+6] (8 frames, one site each).

Stacks are drawn from a seeded generator until N distinct ones are found, so a
run gives the same report.

    python3 benches/audit/big_report.py /tmp/r100k.json --stacks 100000
    ringpool-audit show /tmp/r100k.json --by stack --format folded -o out --force
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from audit import elfsym  # noqa: E402  (the build ids and symbols of the modules)

# module name, kind, functions, source files, prefix of its function names
MODULES = (
    ("app", "exe", 1800, 20, ("main_", "cmd_", "run_", "handle_", "build_")),
    ("libparse.so", "lib", 700, 10, ("parse_", "lex_", "token_", "ast_")),
    ("libstore.so", "lib", 700, 10, ("store_", "index_", "page_", "btree_")),
    ("libnet.so", "lib", 500, 10, ("net_", "conn_", "proto_", "buf_")),
    ("libutil.so", "lib", 500, 10, ("util_", "str_", "hash_", "list_")),
)
CALL_SITES = 4
WRAPPERS = ("xmalloc", "xstrdup", "xrealloc", "g_malloc")


def _sources(root: Path, name: str, functions: int, files: int,
             prefixes: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    stem = name.split(".")[0].removeprefix("lib")
    names = [f"{prefixes[i % len(prefixes)]}{stem}_{i}" for i in range(functions)]
    if name == "app":
        names[: len(WRAPPERS) + 1] = ["main", *WRAPPERS]
    paths = []
    per_file = -(-functions // files)
    for k in range(files):
        path = root / "src" / stem / f"{stem}_{k}.c"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["static volatile int sink;\n"]
        for fn in names[k * per_file:(k + 1) * per_file]:
            ret = "int" if fn == "main" else "void"
            body = "".join(f"    sink += {n};\n    sink ^= {n + 7};\n" for n in range(CALL_SITES))
            lines.append(f"{ret} {fn}(void) {{\n{body}" + ("    return 0;\n" if fn == "main" else "") + "}\n")
        path.write_text("".join(lines))
        paths.append(path)
    return paths, names


def build_modules(root: Path) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """Builds the modules; per module its path and (function, start, size) of each function."""
    out = []
    for name, kind, functions, files, prefixes in MODULES:
        sources, names = _sources(root, name, functions, files, prefixes)
        target = root / name
        flags = ["-shared", "-fPIC"] if kind == "lib" else ["-pie", "-fPIE"]
        subprocess.run(["cc", "-g", "-O0", *flags, "-o", str(target), *map(str, sources)], check=True)
        elf = elfsym.ElfFile.open(str(target))
        wanted = set(names)
        funcs = sorted((value, size, fn) for value, size, fn, _glob in elf.function_symbols()
                       if fn in wanted and size > 16)
        out.append((str(target), [(fn, value, size) for value, size, fn in funcs]))
    return out


def program_report(n: int, root: Path, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    built = build_modules(root)
    modules = []
    for i, (path, _funcs) in enumerate(built):
        build_id = elfsym.ElfFile.open(path).build_id()
        entry: dict[str, object] = {"path": path, "base": f"{0x7f1000000000 + i * 0x10000000:#x}"}
        if build_id:
            entry["build_id"] = build_id
        modules.append(entry)
    frames: list[list[object]] = []
    frame_index: dict[tuple[int, int], int] = {}

    def frame(module: int, offset: int) -> int:
        key = (module, offset)
        k = frame_index.get(key)
        if k is None:
            k = frame_index[key] = len(frames)
            frames.append([module, f"{offset:#x}"])
        return k

    def call_site(module: int, fn: tuple[str, int, int]) -> int:
        _name, start, size = fn
        return frame(module, start + size * (1 + rng.randrange(CALL_SITES)) // (CALL_SITES + 1))

    by_name = {fn[0]: (0, fn) for fn in built[0][1]}
    main = by_name["main"]
    wrappers = [by_name[w] for w in WRAPPERS]
    # Layers from the outside in: the program's dispatch code first, the libraries' inside.
    # Outer layers are small (shared by many stacks), inner ones large (spread).
    plain = [(m, fn) for m, (_p, funcs) in enumerate(built) for fn in funcs
             if fn[0] not in ("main", *WRAPPERS)]
    rng.shuffle(plain)
    sizes = [4, 12, 40, 120, 300, 600, 900, 1200, 1500, 1800, 2200, 2600, 3000, 3500, 4000]
    layers = [plain[:s] for s in sizes]
    stacks: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    while len(stacks) < n:
        depth = rng.randint(8, 16)
        outer = [call_site(*main)]
        for level in range(depth - 2):
            outer.append(call_site(*rng.choice(layers[min(level, len(layers) - 1)])))
        leaf = call_site(*rng.choice(wrappers)) if rng.random() < 0.8 else call_site(*rng.choice(plain))
        stack = [leaf, *reversed(outer)]
        if rng.random() < 0.05:
            stack[0] = frame(-1, 0x7f9000000000 + rng.randrange(1 << 20) * 16)
        key = tuple(stack)
        if key in seen:
            continue
        seen.add(key)
        stacks.append(stack)
    return _report(n, modules, frames, stacks, rng, str(root / "app"))


def bare_report(n: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    frames = [[-1, f"{0x400000 + 16 * i:#x}"] for i in range(n + 8)]
    stacks = [[i, *range(n, n + 7)] for i in range(n)]
    return _report(n, [], frames, stacks, rng, "/usr/bin/bare")


def _report(n: int, modules: list[dict[str, object]], frames: list[list[object]],
            stacks: list[list[int]], rng: random.Random, exe: str) -> dict[str, object]:
    sites: list[dict[str, Any]] = []
    for i, stack in enumerate(stacks):
        module_index, offset = frames[stack[0]]
        assert isinstance(module_index, int)
        blocks = 1 + rng.randrange(4)
        size = 16 * (1 + rng.randrange(64))
        sites.append({"module": modules[module_index]["path"] if module_index >= 0 else "?",
                      "offset": offset, "stack": i, "blocks": blocks, "bytes": blocks * size,
                      "allocs": blocks + rng.randrange(3), "alloc_bytes": (blocks + 2) * size})
    return {"format": "ringpool-preload", "version": 1, "pid": 4242, "exe": exe,
            "taken_at": "2026-12-07T20:00:00Z", "reason": "exit",
            "totals": {"blocks": sum(s["blocks"] for s in sites), "bytes": sum(s["bytes"] for s in sites),
                       "allocs": sum(s["allocs"] for s in sites), "sites": n, "sites_outstanding": n,
                       "untracked_frees": 0, "dropped": 0, "bootstrap_bytes": 0},
            "modules": modules, "stack_depth": 64, "frames": frames, "stacks": stacks, "sites": sites}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the report to write (the program layout's modules go to OUT.modules/)")
    ap.add_argument("--stacks", type=int, default=100_000)
    ap.add_argument("--layout", choices=("program", "bare"), default="program")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.layout == "bare":
        doc = bare_report(args.stacks, args.seed)
    else:
        root = Path(args.out + ".modules").resolve()
        root.mkdir(parents=True, exist_ok=True)
        doc = program_report(args.stacks, root, args.seed)
    tmp = f"{args.out}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, args.out)
    nframes = len(doc["frames"])  # type: ignore[arg-type]
    print(f"{args.out}: {args.stacks} stacks, {nframes} distinct frames, "
          f"{len(doc['modules'])} modules ({args.layout})")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
