#!/usr/bin/env bash
# contention_smoke.sh BIN -- a seconds-long run of the contention benchmark
# with tiny counts, and its bad inputs (used by `make test`).
set -euo pipefail
BIN=${1:?usage: contention_smoke.sh BIN}
fail() { echo "contention_smoke.sh: FAIL: $*" >&2; exit 1; }
. "$(dirname "$0")/smoke_lib.sh"
out=$(GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 "$BIN" --quick --pairs 5000 \
      --repeats 1 --threads 2 --threads 3 --size mixed) || fail "contention exited $?"
for want in "| glibc |" "| rp-locked | one shared pool |" "| arena-locked | one shared pool |" \
            "| rp-locked/creator |" "| arena-locked/creator |" \
            "| rp-locked/thread |" "| arena-locked/thread |" " 2 threads " " 3 threads "; do
    grep -qF -- "$want" <<<"$out" || { echo "$out"; fail "output lacks '$want'"; }
done
expect_error() { expect_exit_2 contention "$1" "$BIN" "${@:2}"; }   # 'message part' args...
expect_error "unknown option '--frobnicate'" --frobnicate
expect_error "--threads: '0' is not a whole number" --threads 0
expect_error "--pairs: 'many' is not a whole number" --pairs many
expect_error "--repeats needs a value" --repeats
echo "test-bench-contention: passed"
