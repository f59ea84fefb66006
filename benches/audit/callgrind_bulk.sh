#!/usr/bin/env bash
# Instructions per block of the fill and of the release, per strategy, with
# valgrind --tool=callgrind (the same count whatever else the machine does).
#   benches/audit/callgrind_bulk.sh [BLOCKS]        (default 100000; `make bench-audit-callgrind`)
set -euo pipefail
cd "$(dirname "$0")/../.."
BLOCKS=${1:-100000}
BUILD=${BUILD:-build}
OUT=$BUILD/bench-audit
BIN=$OUT/callgrind_bulk
mkdir -p "$OUT"
${CC:-cc} -std=c11 -Wall -Wextra -Werror -O2 -g -D_GNU_SOURCE -DRP_BUILDING -Icsrc/include -Icsrc -Iaudit \
    benches/audit/callgrind_bulk.c audit/_bench_kernel.c csrc/*.c -o "$BIN" -ldl -lpthread
command -v valgrind >/dev/null || { echo "valgrind is missing (make setup-sys)" >&2; exit 1; }

count() { # strategy function [options...] -> instructions in function per block
    local strategy=$1 fn=$2; shift 2
    local file="$OUT/cg.$strategy.$fn.$$"
    valgrind --tool=callgrind --callgrind-out-file="$file" --toggle-collect="$fn" \
        "$BIN" "$strategy" "$BLOCKS" "$@" >/dev/null 2>"$file.err" || { cat "$file.err" >&2; return 1; }
    local ir
    ir=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    rm -f "$file" "$file.err"
    awk -v ir="$ir" -v n="$BLOCKS" 'BEGIN { v = ir / n; printf (v >= 10 ? "%.1f" : "%.3f"), v }'
}

printf '| strategy (%s blocks, mixed sizes, random order) | fill instr/block | release instr/block |\n' "$BLOCKS"
printf '|---|---:|---:|\n'
row() { # label strategy [options]
    local label=$1 strategy=$2; shift 2
    if ! "$BIN" "$strategy" 1 "$@" >/dev/null 2>&1; then
        printf '| %s | (not installed) | |\n' "$label"; return
    fi
    printf '| %s | %s | %s |\n' "$label" "$(count "$strategy" rpb_fill "$@")" "$(count "$strategy" rpb_release "$@")"
}
row "ringpool/malloc per-block free" rp-free
row "ringpool/malloc bulk destroy" rp-destroy
row "ringpool/arena per-block free" rp-free arena
row "ringpool/arena bulk destroy" rp-destroy arena
row "ringpool/arena bulk destroy, unsync" rp-destroy arena unsync
row "glibc malloc+free" glibc
row "talloc per-block free" talloc-free
row "talloc free(parent)" talloc-destroy
row "APR apr_pool_destroy" apr-destroy
row "mimalloc mi_free" mi-free
row "mimalloc mi_heap_destroy" mi-destroy
