#!/usr/bin/env bash
# callgrind_realloc.sh -- instructions per resize for the realloc workloads of
# bench.c (realloc-step: +16 B steps from 16 B to 64 KiB; realloc-double:
# doubling from 16 B to 1 MiB), every implementation that loads, one table.
# Only rpb_measured_realloc() is counted (the round's alloc and free included).
#   benches/c/callgrind_realloc.sh [-b path/to/bench]
set -euo pipefail
bin=build/bench-c/bench
while getopts b: o; do
    case $o in b) bin=$OPTARG ;; *) echo "usage: $0 [-b bench]" >&2; exit 2 ;; esac
done
command -v valgrind >/dev/null || { echo "$0: valgrind is not installed" >&2; exit 2; }
[ -x "$bin" ] || { echo "$0: $bin is not built (make build/bench-c/bench)" >&2; exit 2; }
# jemalloc's initial-exec TLS needs static TLS room when it is dlopen()ed
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.rtld.optional_static_tls=16384}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
impls="glibc rp-unsync rp-locked arena-unsync arena-locked mimalloc-heap talloc jemalloc"
echo "| workload | impl | instructions/resize |"
echo "|---|---|---:|"
for w in realloc-step realloc-double; do
    if [ $w = realloc-step ]; then rounds=20; per=4095; else rounds=200; per=16; fi
    for i in $impls; do
        if ! "$bin" --one $w --impl $i --count 1 >/dev/null 2>&1; then
            echo "| $w | $i | (not available) |"; continue
        fi
        valgrind --tool=callgrind --toggle-collect=rpb_measured_realloc \
            --callgrind-out-file="$tmp/cg" "$bin" --one $w --impl $i --count $rounds \
            >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
        ir=$(sed -n 's/^summary: *//p;s/^totals: *//p' "$tmp/cg" | head -n1)
        awk -v ir="$ir" -v n=$((rounds * per)) -v w=$w -v i=$i \
            'BEGIN { printf "| %s | %s | %.0f |\n", w, i, ir / n }'
    done
done
