#!/usr/bin/env bash
# tests/c/header/check.sh BUILD_DIR -- ringpool.h as programs include it: every
# macro, type and declaration used (every_use.c), built with gcc and clang as
# C99, C11, C17 and C2x and with g++ and clang++ as C++11 to C++20, with the
# warnings strict projects turn on and -Werror; then old_dialects.c as C89
# and C++98. Each program is linked against BUILD_DIR/libringpool.so and run.
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/rp-header.XXXXXX")
trap 'rm -rf "$work"' EXIT

warn=(-Wall -Wextra -Wpedantic -Werror -Wconversion -Wsign-conversion -Wshadow
      -Wcast-qual -Wcast-align -Wundef -Wredundant-decls -Wdouble-promotion
      -Wformat=2 -Wvla -Wmissing-declarations)
warn_c=(-Wstrict-prototypes -Wmissing-prototypes -Wold-style-definition -Wc++-compat)
warn_cxx=(-Wold-style-cast -Wzero-as-null-pointer-constant -Wextra-semi -Wnon-virtual-dtor)
link=(-I"$root/csrc/include" -L"$build" -lringpool)
checked=0

run() {  # run NAME COMPILER ARGS...
    local name=$1 exe="$work/$1"
    shift
    if ! "$@" -o "$exe" "${link[@]}" 2> "$work/err"; then
        echo "FAIL $name: $*"; cat "$work/err"; exit 1
    fi
    env -u RINGPOOL_REPORT -u RINGPOOL_POOL_STACKS LD_LIBRARY_PATH="$build" "$exe" ||
        { echo "FAIL $name: the program exited with $?"; exit 1; }
    checked=$((checked + 1))
}

for cc in gcc clang; do
    command -v "$cc" > /dev/null || { echo "FAIL: $cc is not installed (make setup-sys installs it)"; exit 1; }
    for std in c99 c11 c17 c2x; do
        run "$cc-$std" "$cc" -std=$std "${warn[@]}" "${warn_c[@]}" "$here/every_use.c"
    done
    run "$cc-c89" "$cc" -std=c89 -Wall -Wextra -Wpedantic -Werror "$here/old_dialects.c"
done
for cxx in g++ clang++; do
    command -v "$cxx" > /dev/null || { echo "FAIL: $cxx is not installed (make setup-sys installs it)"; exit 1; }
    for std in c++11 c++14 c++17 c++20; do
        run "$cxx-$std" "$cxx" -x c++ -std=$std "${warn[@]}" "${warn_cxx[@]}" "$here/every_use.c"
    done
    run "$cxx-c++98" "$cxx" -x c++ -std=c++98 -Wall -Wextra -Wpedantic -Werror "$here/old_dialects.c"
done
# clang's every warning, bar padding (the public structs are what they are)
run "clang-everything" clang -std=c11 -Weverything -Wno-padded -Wno-declaration-after-statement \
    -Werror "$here/every_use.c"
run "clang++-everything" clang++ -x c++ -std=c++20 -Weverything -Wno-padded -Wno-c++98-compat \
    -Wno-c++98-compat-pedantic -Werror "$here/every_use.c"
echo "ringpool.h: $checked consumers built with -Werror and run"
