#!/usr/bin/env bash
# smoke.sh DIR -- seconds-long checks of the trace recorder (rptrace.so) and
# the replay, with the binaries built in DIR (rptrace.so, replay, tiny,
# churn): a small program's trace holds exactly its calls, replays the same
# against glibc and every ringpool pool kind, and bad traces and arguments
# get clear errors. Run by `make test` (test-bench-traces).
set -euo pipefail
D=$(cd "${1:?usage: smoke.sh BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
SO=$D/rptrace.so
REPLAY=$D/replay
fail() { echo "trace smoke: FAIL: $*" >&2; exit 1; }
. "$HERE/../smoke_lib.sh"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# 1. the tiny program's own calls, in order, with ids reused last-freed first
RPTRACE_FILE=$T/tiny.trace LD_PRELOAD=$SO "$D/tiny" >"$T/out" 2>&1 || fail "tiny exited $?"
grep -qx "tiny: done" "$T/out" || fail "tiny did not run: $(cat "$T/out")"
"$REPLAY" --dump "$T/tiny.trace" >"$T/dump"
cat >"$T/want" <<'EOF'
malloc 1 24
calloc 2 24
realloc 1 4000
aligned 3 100 64
aligned 4 64 32
aligned 5 10 4096
malloc 6 10
free 6
free 2
malloc 2 0
malloc 6 20
free 1
free 3
free 4
free 5
free 2
free 6
EOF
diff "$T/want" "$T/dump" >/dev/null || { diff "$T/want" "$T/dump" >&2 || true; fail "tiny's trace is not its calls"; }
# the floors: most live bytes 4208 (after malloc 6 10); sizes rounded up to
# 16 bytes (0 to 16) 4240 (after malloc 6 20); with a 16-byte header each 4336
info=$("$REPLAY" --info "$T/tiny.trace")
grep -q " peak_live_bytes=4208 .* peak_slot16_bytes=4240 peak_hdr16_bytes=4336$" <<<"$info" \
    || fail "tiny's floors: $info"

# 2. two threads allocating at once: a consistent trace (every free and
#    resize names a live object: replay checks that while reading), and the
#    same outcome against glibc and each pool kind
RPTRACE_FILE=$T/threads.%p.trace LD_PRELOAD=$SO "$D/tiny" threads >/dev/null || fail "tiny threads exited $?"
set -- "$T"/threads.*.trace
[ $# -eq 1 ] && [ -s "$1" ] || fail "RPTRACE_FILE with %p: expected one trace, got $*"
THREADS=$1
for trace in "$T/tiny.trace" "$THREADS"; do
    want=""
    for impl in glibc rp-unsync rp-locked arena-unsync arena-locked; do
        line=$("$REPLAY" --impl $impl "$trace") || fail "replay --impl $impl $trace exited $?"
        grep -q " bad_blocks=0$" <<<"$line" || fail "replay --impl $impl: $line"
        got=${line%% impl=*}
        [ -z "$want" ] && want=$got
        [ "$got" = "$want" ] || fail "replay --impl $impl differs: '$got' vs '$want'"
    done
done
"$REPLAY" --info "$THREADS" | grep -q "free=400[0-9][0-9] " || fail "the threads' 40000 frees are missing: $("$REPLAY" --info "$THREADS")"

# 3. the churn workload, small: LIVE + OPS mallocs (and stdout's buffer),
#    the slot table's calloc, as many frees; LIVE blocks and the table live
RPTRACE_FILE=$T/churn.trace LD_PRELOAD=$SO "$D/churn" 100 5000 >/dev/null || fail "churn exited $?"
info=$("$REPLAY" --info "$T/churn.trace")
grep -q " malloc=5101 calloc=1 realloc=0 free=5101 aligned=0 max_live=101 " <<<"$info" \
    || fail "churn trace: $info"
"$REPLAY" --impl arena-unsync "$T/churn.trace" | grep -q " bad_blocks=0$" || fail "churn replay"

# 4. the recorder never writes over a file, and without RPTRACE_FILE records nothing
echo keep >"$T/existing"
RPTRACE_FILE=$T/existing LD_PRELOAD=$SO "$D/tiny" >"$T/out" 2>&1 || fail "tiny with an existing trace file exited $?"
grep -q "exists already, not recording" "$T/out" || fail "no message for an existing file: $(cat "$T/out")"
[ "$(cat "$T/existing")" = keep ] || fail "the recorder wrote over an existing file"
(cd "$T" && env -u RPTRACE_FILE LD_PRELOAD=$SO "$D/tiny" >/dev/null) || fail "tiny without RPTRACE_FILE"
RPTRACE_FILE=$T/no-such-dir/x.trace LD_PRELOAD=$SO "$D/tiny" >"$T/out" 2>&1 || fail "tiny with a bad path exited $?"
grep -q "cannot create" "$T/out" || fail "no message for a path that cannot be created"

# 5. bad traces and arguments: exit status 2 and a message naming the problem
expect_error() { expect_exit_2 replay "$1" "$REPLAY" "${@:2}"; }   # 'message part' args...
bad() { printf "$2" >"$T/$1.trace"; }
bad short 'RPT'
bad nomagic 'NOTATRACE\001\001\001'
bad cut 'RPTRACE1\001\001\020\001\002'
bad deadfree 'RPTRACE1\001\001\020\004\002'
bad twice 'RPTRACE1\001\001\020\001\001\020'
bad kind 'RPTRACE1\011\001'
bad align 'RPTRACE1\005\001\020\077'
bad id0 'RPTRACE1\001\000\020'
expect_error "cannot open trace" --info "$T/none.trace"
expect_error "too short" --info "$T/short.trace"
expect_error "not an allocation trace" --info "$T/nomagic.trace"
expect_error "record cut short" --info "$T/cut.trace"
expect_error "free of object 2, which is not live" --info "$T/deadfree.trace"
expect_error "malloc of object 1, which is live already" --impl glibc "$T/twice.trace"
expect_error "unknown record type 9" --dump "$T/kind.trace"
expect_error "alignment 2^63 out of range" --info "$T/align.trace"
expect_error "object id 0 out of range" --info "$T/id0.trace"
expect_error "not a regular file" --info "$T"
expect_error "unknown implementation 'nosuch'" --impl nosuch "$T/tiny.trace"
expect_error "--impl needs a value" --impl
expect_error "needs a trace file" --info
expect_error "unknown option '--frob'" --frob
expect_error "say --impl IMPL" "$T/tiny.trace"
expect_error "one trace at a time" --info "$T/tiny.trace" "$T/tiny.trace"
if "$REPLAY" --list-impls | grep -qx talloc; then
    expect_error "talloc has no aligned allocation" --impl talloc "$T/tiny.trace"
fi

# 6. the table driver, on the tiny trace (callgrind when valgrind is here)
mkdir "$T/dir" && cp "$T/tiny.trace" "$T/dir/tiny.trace"
cg=-C; command -v valgrind >/dev/null && cg=""
"$HERE/../traces.sh" -b "$REPLAY" -d "$T/dir" -t tiny -r 1 -i glibc,arena-unsync $cg >"$T/table" \
    || fail "traces.sh exited $?"
for want in "### tiny: 17 operations" "| glibc |" "| arena-unsync |"; do
    grep -qF -- "$want" "$T/table" || { cat "$T/table"; fail "traces.sh output lacks '$want'"; }
done
if [ -z "$cg" ]; then   # a count of zero or below would mean the measured region is empty
    awk -F'|' '/^\| (glibc|arena-unsync) \|/ { if ($3 + 0 <= 0) exit 1 }' "$T/table" \
        || { cat "$T/table"; fail "traces.sh counted no instructions"; }
fi
tr_error() { expect_exit_2 traces.sh "$1" "$HERE/../traces.sh" "${@:2}"; }
tr_error "'0' is not a whole number" -b "$REPLAY" -d "$T/dir" -r 0
tr_error "no traces in" -b "$REPLAY" -d "$T/empty"
tr_error "'nosuch' is unknown" -b "$REPLAY" -d "$T/dir" -t tiny -i glibc,nosuch
echo "test-bench-traces: recorder and replay smoke runs passed"
