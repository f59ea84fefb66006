#!/usr/bin/env bash
# smoke.sh BENCH -- a seconds-long run of every C benchmark mode with tiny
# counts, plus the bad inputs, so the benches keep building and working.
# Used by `make test` (target test-bench-c); the real runs are `make bench-c`.
set -euo pipefail
BENCH=${1:?usage: smoke.sh BENCH}
DIR=$(cd "$(dirname "$0")" && pwd)
fail() { echo "smoke.sh: FAIL: $*" >&2; exit 1; }
. "$DIR/smoke_lib.sh"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# 1. the tables, tiny counts
"$BENCH" --quick --max-blocks 1000 --cold-blocks 1000 --repeats 1 >"$out" || fail "bench --quick exited $?"
for want in "alloc+free pairs" "| mixed |" "bulk: N mixed-size blocks" "| 1000 | arena-unsync |" \
            "churn: working set" "rp_pool_stats with 1000 outstanding" \
            "realloc-step (5 rounds)" "realloc-double (200 rounds)" \
            "cold destroy: 1000 mixed-size blocks" "| arena-locked |" "| arena-checked |"; do
    grep -qF -- "$want" "$out" || { cat "$out"; fail "bench --quick output lacks '$want'"; }
done
grep -q "MISSED" "$out" && { cat "$out"; fail "rp_pool_stats over 1 ms with 1000 blocks"; }

# 2. every workload once per ringpool pool kind (and glibc where it applies)
for impl in glibc rp-unsync rp-locked arena-unsync arena-locked rp-checked arena-checked; do
    for w in pair fill free-each churn; do
        "$BENCH" --one $w --impl $impl --count 500 --size mixed --churn-ws 100 >/dev/null \
            || fail "bench --one $w --impl $impl"
    done
    [ $impl = glibc ] && continue
    "$BENCH" --one destroy --impl $impl --count 500 --size 64 >/dev/null || fail "destroy $impl"
    "$BENCH" --one stats --impl $impl --count 500 >/dev/null || fail "stats $impl"
done

rz_impls="glibc rp-unsync rp-locked arena-unsync arena-locked"
"$BENCH" --list-impls | grep -qx talloc && rz_impls="$rz_impls talloc"
for impl in $rz_impls; do
    for w in realloc-step realloc-double; do
        "$BENCH" --one $w --impl $impl --count 2 | grep -q "^resizes " || fail "$w $impl"
    done
done

# 3. bad inputs: exit status 2 and a message naming the problem
expect_error() { expect_exit_2 bench "$1" "$BENCH" "${@:2}"; }   # 'message part' args...
expect_error "unknown option '--frobnicate'" --frobnicate
expect_error "unknown workload 'juggle'" --one juggle --impl glibc --count 10
expect_error "not 'apr-pool'" --one realloc-step --impl apr-pool --count 1
expect_error "unknown implementation 'jemalloc-xyz'" --one pair --impl jemalloc-xyz --count 10
expect_error "--one needs --count" --one pair --impl glibc
expect_error "--one needs --impl" --one pair --count 10
expect_error "--count: 'ten' is not a whole number" --one pair --impl glibc --count ten
expect_error "--count: '0' is not a whole number" --one pair --impl glibc --count 0
expect_error "--count: '1.5' is not a whole number" --one pair --impl glibc --count 1.5
expect_error "--size: '-3' is not a whole number" --one pair --impl glibc --count 10 --size -3
expect_error "--repeats needs a value" --repeats
expect_error "unknown section 'nope'" --section nope
expect_error "--cold-blocks: '5' is not a whole number" --cold-blocks 5
expect_error "glibc has no bulk destroy" --one destroy --impl glibc --count 10
expect_error "glibc has no per-tag stats" --one stats --impl glibc --count 10
expect_error "go with --one" --count 10
if "$BENCH" --list-impls | grep -qx apr-pool; then
    expect_error "apr-pool has no per-block free" --one pair --impl apr-pool --count 10
fi

# 4. the callgrind driver, two pools and glibc, tiny counts
if command -v valgrind >/dev/null; then
    "$DIR/callgrind.sh" -q -b "$BENCH" -i glibc,rp-unsync,arena-unsync,arena-locked,arena-checked >"$out" \
        || fail "callgrind.sh exited $?"
    for want in "| glibc |" "| rp-unsync |" "| arena-unsync | bulk destroy |" "rp_pool_stats call" \
                "| arena-checked | arena-locked |"; do
        grep -qF -- "$want" "$out" || { cat "$out"; fail "callgrind.sh output lacks '$want'"; }
    done
    # a per-pair count of zero or below would mean the measured region is empty
    awk -F'|' '/^\| (glibc|rp-unsync) \|/ && NR < 12 { split($3, a, " "); if (a[1] + 0 <= 0) exit 1 }' "$out" \
        || { cat "$out"; fail "callgrind.sh counted no instructions per pair"; }
    cg_error() { expect_exit_2 callgrind.sh "$1" "$DIR/callgrind.sh" "${@:2}"; }
    cg_error "'abc' is not a positive whole number" -b "$BENCH" -n abc
    cg_error "not found" -b /nonexistent/bench
    cg_error "'nosuch' is unknown" -b "$BENCH" -i glibc,nosuch
    cg_error "glibc must be among" -b "$BENCH" -i rp-unsync
else
    fail "valgrind is missing (make setup-sys installs it)"
fi
echo "test-bench-c: bench and callgrind.sh smoke runs passed"
