#!/usr/bin/env bash
# The installed product, used the way a user would, far from the repository:
#   check_installed.sh DIST_DIR
# DIST_DIR holds the sdist and the wheel (`python -m build`). The wheel goes into
# a fresh venv in a temporary directory; from there: ringpool-audit --help, demo,
# a C program built with the bundled header and library writing reports for
# show/diff, run --preload on a leaking C program (exact sites, exit status; its
# whole stacks, sampling, and the pprof, speedscope, HTML and folded exports of
# it and of a pool report),
# a throwaway pytest project using the ringpool_no_leaks, limit_memory and
# limit_leaks markers, the errors
# when the interposer is missing, the package imported again after sys.modules
# is purged (as a pytester inline run does), and run --python on a small script. Then the sdist is installed once into a second
# venv (pip builds it) and checked again, more briefly.
# Environment: PYTHON_SYS (python3), CC (cc), VERSION (expected version).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dist=$(cd "$1" && pwd)
python=${PYTHON_SYS:-python3}
cc=${CC:-cc}
version=${VERSION:?VERSION must be set}

step() { echo "== test-install: $*"; }
fail() { echo "test-install: FAILED: $*" >&2; exit 1; }
# expect STATUS CMD...: runs CMD, fails unless it exits with STATUS; its stdout
# is then in $out, its stderr in $err, both in $all.
expect() {
    local want=$1 got=0; shift
    "$@" >"$work/.stdout" 2>"$work/.stderr" || got=$?
    out=$(<"$work/.stdout") err=$(<"$work/.stderr") all=$out$'\n'$err
    [ "$got" = "$want" ] || { printf '%s\n' "$all" >&2; fail "$* exited $got, expected $want"; }
}

shopt -s nullglob
wheels=("$dist"/ringpool-"$version"-*.whl)
sdists=("$dist"/ringpool-"$version".tar.gz)
[ ${#wheels[@]} = 1 ] || fail "expected one ringpool $version wheel in $dist, found ${#wheels[@]}"
[ ${#sdists[@]} = 1 ] || fail "expected the ringpool $version sdist in $dist"
wheel=${wheels[0]} sdist=${sdists[0]}

work=$(mktemp -d "${TMPDIR:-/tmp}/ringpool-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
case "$work/" in "$repo"/*) fail "$work is inside the repository";; esac
cd "$work"
# Nothing from the repository may leak in: no PYTHONPATH, no interposer override.
unset PYTHONPATH RINGPOOL_PRELOAD_LIB RINGPOOL_REPORT PYTEST_DISABLE_PLUGIN_AUTOLOAD VIRTUAL_ENV
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Dependencies (and the sdist's build requirements) at the pinned versions.
export PIP_CONSTRAINT="$repo/requirements.txt"

# ------------------------------------------------------------ what was built
step "the wheel's tags and contents: $(basename "$wheel")"
case "$(basename "$wheel")" in
    *-none-any.whl|*-manylinux*) fail "the wheel carries native code: its tag must name the platform";;
    *-linux_"$(uname -m)".whl) ;;
    *) fail "unexpected platform tag on $(basename "$wheel")";;
esac
"$python" - "$wheel" "$sdist" "$version" <<'EOF'
import sys, tarfile, zipfile
wheel, sdist, version = sys.argv[1:]
names = set(zipfile.ZipFile(wheel).namelist())
need = ["allocator/__init__.py", "allocator/config.py", "allocator/py.typed",
        "allocator/_ringpool.pyi", "allocator/_pyhooks.pyi",
        "allocator/include/ringpool.h", "allocator/lib/libringpool.so", "allocator/lib/libringpool.so.0",
        "allocator/lib/ringpool/libringpool-preload.so", "allocator/lib/pkgconfig/ringpool.pc",
        "audit/__init__.py", "audit/cli.py", "audit/commands/__init__.py", "audit/commands/run.py",
        "audit/commands/config.py", "audit/pytest_plugin.py", "audit/py.typed", "audit/_pyboot.py",
        "audit/export/__init__.py", "audit/export/pprof.py", "audit/export/speedscope.py",
        "audit/export/html.py", "audit/export/folded.py",
        f"ringpool-{version}.dist-info/licenses/LICENSE"]
missing = [n for n in need if n not in names]
for ext in ("allocator/_ringpool", "allocator/_pyhooks", "allocator/_pystack", "audit/_bench"):
    if not any(n.startswith(ext + ".") and n.endswith(".so") for n in names):
        missing.append(ext + ".*.so")
assert not missing, f"wheel lacks {missing}"
stray = sorted(n for n in names if n.startswith(("tests/", "csrc/", "benches/", "build/")) or n.endswith((".o", ".c")))
assert not stray, f"wheel carries files that are not the product: {stray}"
meta = zipfile.ZipFile(wheel).read(f"ringpool-{version}.dist-info/METADATA").decode()
for line in ("License-Expression: MIT", "Classifier: Typing :: Typed", f"Version: {version}"):
    assert line in meta.splitlines(), f"METADATA lacks {line!r}"
top = f"ringpool-{version}/"
snames = {n[len(top):] for n in tarfile.open(sdist).getnames() if n.startswith(top)}
need = ["setup.py", "pyproject.toml", "LICENSE", "README.md", "Makefile", "requirements.txt",
        "ringpool.pc.in", "csrc/flags.mk", "csrc/include/ringpool.h", "csrc/pool.c",
        "csrc/outfile.c", "csrc/outfile.h", "csrc/preload/hooks.c", "csrc/preload/rpp.h", "csrc/stack/stack.c", "mk/preload.mk", "cmake/ringpoolConfig.cmake.in",
        "allocator/_build.py", "allocator/_ringpool_cdef.h", "allocator/_pyhooks.c", "allocator/_pystack.c",
        "allocator/_pystack.h", "audit/_bench_build.py",
        "audit/_bench_kernel.c", "audit/commands/run.py"]
missing = [n for n in need if n not in snames]
assert not missing, f"sdist lacks {missing}"
stray = sorted(n for n in snames if n.endswith((".so", ".o")) or n.startswith(("allocator/lib/", "build/")))
assert not stray, f"sdist carries build products: {stray}"
print(f"wheel: {len(names)} files; sdist: {len(snames)} files")
EOF

# ------------------------------------------------------------ the wheel
step "a fresh venv in $work, pip install $(basename "$wheel")"
"$python" -m venv venv
venv/bin/python -m pip install -q "$wheel"
bin=$work/venv/bin

# check_c VENV_BIN: builds and runs the C programs against that install.
check_c() {
    local bin=$1 flags
    step "build a C program with \`ringpool-audit config --cflags --libs\`"
    flags=$("$bin"/ringpool-audit config --cflags --libs)
    [ "$flags" = "$("$bin"/python -m allocator --cflags --libs)" ] || fail "python -m allocator disagrees with config"
    case "$flags" in *"$work"/*) ;; *) fail "flags do not point into the venv: $flags";; esac
    "$cc" -std=c11 -Wall -Wextra -Werror "$here/reports.c" $flags -o reports
    grep -q "libringpool.so.0 => $work/.*/allocator/lib/libringpool.so.0" <<< "$(ldd ./reports)" ||
        { ldd ./reports; fail "reports is not linked against the wheel's libringpool.so.0"; }
    rm -rf out && mkdir out
    expect 0 ./reports out
    step "show and diff on its reports"
    expect 0 "$bin"/ringpool-audit show out/after.json --format json
    "$bin"/python - "$out" <<'EOF'
import json, sys
rows = {r["key"]: r for r in json.loads(sys.argv[1])["rows"]}
assert (rows["cache"]["blocks"], rows["cache"]["bytes"]) == (3, 300), rows
assert (rows["session"]["blocks"], rows["session"]["bytes"]) == (1, 48), rows
assert rows["scratch"]["blocks"] == 0, rows
EOF
    expect 2 "$bin"/ringpool-audit show out/after.json --fail-on-leak --allow-tag cache
    grep -q "session" <<< "$err" || fail "the leak gate does not name the leaking tag"
    expect 0 "$bin"/ringpool-audit diff out/before.json out/after.json --format json
    "$bin"/python - "$out" <<'EOF'
import json, sys
rows = {r["key"]: r for r in json.loads(sys.argv[1])["rows"]}
assert rows["cache"]["bytes_diff"] == 100 and rows["session"]["bytes_diff"] == 48, rows
assert rows["session"]["status"] == "new", rows
EOF
    step "the same program through the bundled ringpool.pc"
    if command -v pkg-config >/dev/null; then
        flags=$(PKG_CONFIG_PATH=$("$bin"/ringpool-audit config --pkgconfigdir) pkg-config --cflags --libs ringpool)
        "$cc" -std=c11 -Wall -Wextra -Werror "$here/reports.c" $flags -o reports-pc
        expect 0 ./reports-pc out
    fi

    step "run --preload on a leaking C program: exact sites and its exit status"
    "$cc" -std=c11 -O0 -g "$here/leaky.c" -o leaky
    local entry name
    entry=$(grep -n 'SITE-ENTRY' "$here/leaky.c" | cut -d: -f1)
    name=$(grep -n 'SITE-NAME' "$here/leaky.c" | cut -d: -f1)
    rm -f preload.json
    expect 3 "$bin"/ringpool-audit run --preload --format json --output preload.json -- ./leaky
    "$bin"/python - preload.json "$entry" "$name" <<'EOF'
import json, sys
path, entry, name = sys.argv[1], sys.argv[2], sys.argv[3]
with open(path, encoding="utf-8") as f:
    doc = json.load(f)
rows = [r for r in doc["rows"] if not r["suppressed"]]
def site(line):
    found = [r for r in rows if r["key"].endswith(f"leaky.c:{line})")]
    assert len(found) == 1, (line, rows)
    return found[0]["blocks"], found[0]["bytes"]
assert site(entry) == (3, 300), site(entry)
assert site(name) == (1, 7), site(name)
assert sum(r["bytes"] for r in rows) == 307, rows
EOF
    expect 2 "$bin"/ringpool-audit run --preload --fail-on-leak -- ./leaky

    step "whole stacks, sampling and every export format from the installed interposer and CLI"
    rm -f stacks.json sampled.json leaks.* pool.*
    expect 3 "$bin"/ringpool-audit run --preload --by stack --format json --output stacks.json -- ./leaky
    expect 3 "$bin"/ringpool-audit run --preload --sample-rate 1 --format json --output sampled.json -- ./leaky
    grep -q "estimated (sampled at 1) 4 blocks, 307 bytes" <<< "$err" || fail "sampling at rate 1 is not exact: $err"
    for fmt in pprof speedscope html folded; do
        expect 3 "$bin"/ringpool-audit run --preload --format "$fmt" --output "leaks.$fmt" -- ./leaky
        expect 0 "$bin"/ringpool-audit show out/after.json --format "$fmt" --output "pool.$fmt"
    done
    "$bin"/python - "$entry" <<'EOF'
import gzip, json, re, sys
entry = sys.argv[1]
with open("stacks.json", encoding="utf-8") as f:
    rows = [r for r in json.load(f)["rows"] if not r["suppressed"]]
# the whole stack: the leaking line, then main, then the C runtime
stack = [r for r in rows if r["key"].startswith("make_entry (") and f"leaky.c:{entry})" in r["key"]]
assert len(stack) == 1 and " < main (" in stack[0]["key"], [r["key"] for r in rows]
assert (stack[0]["blocks"], stack[0]["bytes"]) == (3, 300), stack
with open("sampled.json", encoding="utf-8") as f:
    assert json.load(f)["sample_rate"] == 1
for src, names, total in (("leaks", ("make_entry", "make_name", "main"), 307),
                          ("pool", ("app", "cache", "session"), 348)):
    with open(f"{src}.pprof", "rb") as f:
        raw = gzip.decompress(f.read())            # a gzipped profile.proto
    for s in names + ("inuse_space", "bytes", "alloc_objects"):
        assert s.encode() in raw, (src, "pprof", s)
    with open(f"{src}.speedscope", encoding="utf-8") as f:
        doc = json.load(f)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json", doc["$schema"]
    frames = {fr["name"] for fr in doc["shared"]["frames"]}
    assert all(any(n in fr for fr in frames) for n in names), (src, frames)
    assert total in [sum(p["weights"]) for p in doc["profiles"]], (src, doc["profiles"])
    with open(f"{src}.html", encoding="utf-8") as f:
        page = f.read()
    assert all(n in page for n in names), (src, "html")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page), (src, "the page loads something")
    with open(f"{src}.folded", encoding="utf-8") as f:
        folded = f.read().splitlines()
    assert sum(int(line.rsplit(" ", 1)[1]) for line in folded) == total, (src, folded)
    assert all(any(n in line for line in folded) for n in names), (src, folded)
EOF
}

step "ringpool-audit --help, --version"
expect 0 "$bin"/ringpool-audit --help
for c in show diff run bench demo config; do grep -qw "$c" <<< "$out" || fail "--help lists no $c"; done
expect 0 "$bin"/ringpool-audit --version
[ "$out" = "ringpool-audit $version" ] || fail "--version says '$out'"
expect 0 "$bin"/python -m audit --version

step "ringpool-audit demo"
expect 0 "$bin"/ringpool-audit demo
grep -q "cache-entry" <<< "$all" || fail "the demo shows no leaking tag"

check_c "$bin"

step "the interposer missing: the errors say how to get it"
lib=$("$bin"/ringpool-audit config --preload)
case "$lib" in "$work"/venv/*/allocator/lib/ringpool/libringpool-preload.so) ;; *) fail "interposer at $lib";; esac
expect 1 env RINGPOOL_PRELOAD_LIB="$work/none.so" "$bin"/ringpool-audit run --preload -- ./leaky
grep -q 'RINGPOOL_PRELOAD_LIB names a file that does not exist' <<< "$err" || fail "no hint for \$RINGPOOL_PRELOAD_LIB"
mv "$lib" "$work/preload.so"
expect 1 "$bin"/ringpool-audit run --preload -- ./leaky
grep -q 'missing from the installed ringpool package; reinstall' <<< "$err" || fail "no reinstall hint: $err"
expect 3 env RINGPOOL_PRELOAD_LIB="$work/preload.so" "$bin"/ringpool-audit run --preload -- ./leaky
mv "$work/preload.so" "$lib"

step "a throwaway pytest project using the ringpool_no_leaks, limit_memory and limit_leaks markers"
pytest_pin=$(grep -E '^pytest==' "$repo/requirements-dev.txt")
"$bin"/python -m pip install -q "$pytest_pin"
cp -r "$here/pytest_project" project
expect 1 "$bin"/python -m pytest -q project
grep -q "3 failed, 3 passed" <<< "$out" || { echo "$all"; fail "pytest project: unexpected outcome"; }
for t in test_pools.py::test_forgotten_pool test_limits.py::test_over_memory_limit \
         test_limits.py::test_over_leak_limit; do
    grep -q "FAILED project/$t" <<< "$out" || { echo "$out"; fail "$t did not fail"; }
done
grep -q "forgetful" <<< "$out" && grep -q "never-freed" <<< "$out" ||
    { echo "$out"; fail "the failure does not name the pool and its tag"; }
peak=$(grep -n 'PEAK-LINE' project/test_limits.py | cut -d: -f1)
leak=$(grep -n 'LEAK-LINE' project/test_limits.py | cut -d: -f1)
grep -q "test_over_memory_limit:.*test_limits.py:$peak -> 3.8MiB" <<< "$out" ||
    { echo "$out"; fail "limit_memory does not name the line of the peak"; }
grep -q "test_over_leak_limit:.*test_limits.py:$leak -> 488.4KiB (3 blocks)" <<< "$out" ||
    { echo "$out"; fail "limit_leaks does not name the leaking line"; }

step "a program's code type-checked against the installed package (mypy --strict: py.typed, the stubs)"
mypy_pin=$(grep -E '^mypy==' "$repo/requirements-dev.txt")
"$bin"/python -m pip install -q "$mypy_pin"
mkdir typed && cp "$repo/tests/python/test_typing_consumer.py" typed/
expect 0 "$bin"/python -m mypy --strict --no-incremental typed/test_typing_consumer.py
expect 0 "$bin"/python -m pytest -q -p no:cacheprovider typed/test_typing_consumer.py

step "the package imported again after sys.modules is purged (as pytester's inline runs do)"
"$bin"/python - <<'EOF'
import sys
import allocator
first = allocator.Pool("first")
kept = first.strdup("kept", tag="first")
for name in [n for n in sys.modules if n.split(".")[0] in ("allocator", "audit")]:
    del sys.modules[name]
import allocator as again
import audit.pytest_plugin
assert again is not allocator
with again.Pool("second") as pool:
    b = pool.alloc(8, tag="again")
    b.write(b"12345678")
    assert bytes(memoryview(b)) == b"12345678" and pool.outstanding() == (1, 8)
assert b.freed and bytes(first.strdup("x", tag="first")) == b"x\0" and bytes(kept) == b"kept\0"
from allocator._ringpool import _BlockBuffer
for forge in (lambda: _BlockBuffer(object(), 0x10, 64), lambda: _BlockBuffer._token()):
    try:
        forge()
    except (TypeError, RuntimeError):
        continue
    raise AssertionError("a Block was forged")
first.destroy()
assert kept.freed
EOF
mkdir inline
cat > inline/test_reimport.py <<'EOF'
import pytest

pytest_plugins = ["pytester"]


# pytester restores sys.modules after each inline run: the second run imports
# the package a second time in this process.
@pytest.mark.parametrize("run", [1, 2])
def test_inline(pytester, run):
    pytester.makepyfile(test_inner="""
        import pytest
        from allocator import Pool

        @pytest.mark.ringpool_no_leaks
        def test_leak():
            pool = Pool("inner")
            test_leak.keep = pool, pool.alloc(4, tag="inline-leak")
    """)
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*inline-leak*"])
EOF
expect 0 "$bin"/python -m pytest -q -p no:cacheprovider inline
grep -q "2 passed" <<< "$out" || { echo "$all"; fail "the pytester inline runs did not pass"; }

step "run --python: a script's memory by Python line"
printf 'KEEP = []\nfor i in range(3):\n    KEEP.append(bytearray(100000))\nprint("done")\n' > app.py
rm -f py.json
expect 0 "$bin"/ringpool-audit run --python --by line --format json --output py.json -- app.py
[ "$out" = done ] || fail "run --python changed the script's output: $out"
"$bin"/python - py.json <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    rows = {r["key"]: r for r in json.load(f)["rows"]}
# the script's path as CPython gives it (absolute since 3.9, docs/python-programs.md)
line, = [r for k, r in rows.items() if k.endswith("/app.py:3 (<module>)")]
assert 300000 <= line["bytes"] < 301000, line   # three 100000-byte buffers and their objects
EOF

step "run --python with the interpreter's options: -I -X dev -O, and -S (no site-packages)"
printf 'import sys\nKEEP = [bytearray(100000) for i in range(3)]\nassert False\nprint(sys.flags.isolated, sys.flags.dev_mode, sys.flags.optimize, sys.flags.no_site)\n' > opts_app.py
for opts in "-I -X dev -O" "-S -OO"; do
    rm -f opts.json
    # shellcheck disable=SC2086
    expect 0 "$bin"/ringpool-audit run --python --by line --format json --output opts.json -- "$bin"/python $opts opts_app.py
    # shellcheck disable=SC2086
    want=$("$bin"/python $opts opts_app.py)
    [ "$out" = "$want" ] || fail "run --python -- python $opts: the program saw other flags: $out, not $want"
    "$bin"/python - opts.json <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    rows = {r["key"]: r for r in json.load(f)["rows"]}
line, = [r for k, r in rows.items() if k.endswith("/opts_app.py:2 (<listcomp>)")]
assert 300000 <= line["bytes"] < 301000, rows
EOF
done

step "run --python --native: a C function of the stdlib under the Python line that called it"
printf 'import zlib\nKEEP = []\nfor i in range(20):\n    KEEP.append(zlib.compress(bytes(range(256)) * 400, 1))\n' > native_app.py
rm -f native.json
expect 0 "$bin"/ringpool-audit run --python --native --by stack --format json --output native.json -- native_app.py
"$bin"/python - native.json <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    rows = json.load(f)["rows"]
# hybrid stacks: native frames (zlib's, CPython's), then the Python line that called zlib.compress
hybrid = [r for r in rows if "/native_app.py:4 (<module>)" in r["key"].split(" <- ", 1)[-1]]
assert hybrid and sum(r["blocks"] for r in hybrid) >= 20, [r["key"] for r in rows][:10]
EOF

# ------------------------------------------------------------ a hostile directory
# The wheel again, in a venv whose path holds a space, quotes, '$', a leading '-' and
# non-ASCII (a venv under "My Projects"); run from a working directory of that kind, on a
# program whose path is of that kind too.
hostile="$work/-My Projects é日本 \$x it's"
step "the wheel in a venv under '$hostile'"
mkdir -p "$hostile"
"$python" -m venv "$hostile/venv"
"$hostile/venv/bin/python" -m pip install -q "$wheel"
hbin=$hostile/venv/bin
# pip's console script cannot start from a path holding both a space and a '$' (its
# /bin/sh wrapper puts the path in double quotes): the CLI runs as python -m audit here
cli=("$hbin/python" -m audit)
mkdir -p "$hostile/work dir" && cd "$hostile/work dir"
expect 0 "${cli[@]}" config --cflags --libs
eval "\"\$cc\" -std=c11 -Wall -Wextra -Werror \"\$here/reports.c\" $out -o './rep orts'" ||
    fail "the flags of config --cflags --libs do not read back as the package's paths: $out"
expect 0 "./rep orts" "$hostile/work dir"
expect 0 "${cli[@]}" diff "$hostile/work dir/before.json" "$hostile/work dir/after.json" --format json
grep -q '"bytes_diff": 48' <<< "$out" || fail "diff of the reports in $hostile: $out"
expect 1 "${cli[@]}" config --pkgconfigdir
grep -q "use \`config --cflags --libs\` instead" <<< "$err" || fail "--pkgconfigdir: $err"
"$cc" -std=c11 -O0 -g "$here/leaky.c" -o "./le aky"
expect 3 "${cli[@]}" run --preload --report-dir "rep dir" --format json --output "out 1.json" -- "./le aky"
grep -q '"bytes": 300' "out 1.json" || fail "run --preload from $hostile: $(cat "out 1.json")"
# the interposer goes through a link (the path holds a space); an exec'd child keeps it
expect 3 "${cli[@]}" run --preload --format json --output "out 2.json" -- sh -c 'exec "./le aky"'
! grep -q "cannot be preloaded" <<< "$err" || fail "run --preload: an exec'd child lost the interposer: $err"
grep -q '"bytes": 300' "out 2.json" || fail "run --preload: no report from the exec'd child: $(cat "out 2.json")"
printf 'KEEP = [bytearray(100000) for i in range(3)]\n' > "app it.py"
expect 0 "${cli[@]}" run --python --by line --format json --output "py 1.json" -- "app it.py"
grep -q 'app it.py:1' "py 1.json" || fail "run --python from $hostile: $(cat "py 1.json")"
cd "$work"

# ------------------------------------------------------------ the sdist
step "a second fresh venv, pip install $(basename "$sdist") (pip builds it)"
"$python" -m venv venv-sdist
venv-sdist/bin/python -m pip install -q "$sdist"
bin=$work/venv-sdist/bin
expect 0 "$bin"/ringpool-audit --version
[ "$out" = "ringpool-audit $version" ] || fail "--version says '$out' (sdist)"
check_c "$bin"

echo "test-install: the wheel and the sdist install and work outside the repository"
