#!/usr/bin/env bash
# traces.sh -- replays recorded allocation traces (benches/c/trace/record.sh)
# against every implementation that loads, and prints one markdown table per
# trace plus a summary:
#   - instructions per operation: `replay --impl X TRACE` under
#       valgrind --tool=callgrind --toggle-collect=rpr_measured
#     minus what callgrind attributes to replay.c (the loop, the id table and
#     the writes into the blocks), divided by the number of records;
#   - peak memory: the replay's peak resident set minus its resident set just
#     before the replay (VmHWM after a reset through /proc/self/clear_refs),
#     median of the rounds;
#   - wall time: ns per operation, median of ROUNDS rounds, the
#     implementations interleaved within each round (a fresh process each).
# The target column compares the ringpool arena pools with mimalloc's heap:
# "met" when the arena needs no more instructions per operation and no more
# peak memory than mimalloc-heap on that trace.
#
# usage: benches/c/traces.sh [-b REPLAY] [-d DIR] [-t "NAMES"] [-i IMPL,...]
#                            [-r ROUNDS] [-C] [-k]
#   -b REPLAY  the replay binary (default build/bench-c/replay)
#   -d DIR     where the traces are (default build/traces): DIR/NAME.trace
#   -t NAMES   traces (default "cc1 python3 sqlite3 churn": those present)
#   -i LIST    implementations, comma-separated (default: all that load)
#   -r ROUNDS  wall-time rounds (default 5)
#   -C         no callgrind (wall time and memory only)
#   -k         keep the callgrind output files (their directory is printed)
set -euo pipefail
. "$(dirname "$0")/cli.sh"

REPLAY=build/bench-c/replay
DIR=build/traces
NAMES="cc1 python3 sqlite3 churn"
IMPLS=""
ROUNDS=5
CALLGRIND=1
KEEP=0
while getopts ":b:d:t:i:r:Ckh" opt; do
    case $opt in
    b) REPLAY=$OPTARG ;;
    d) DIR=$OPTARG ;;
    t) NAMES=$OPTARG ;;
    i) IMPLS=${OPTARG//,/ } ;;
    r) ROUNDS=$OPTARG ;;
    C) CALLGRIND=0 ;;
    k) KEEP=1 ;;
    h) usage ;;
    *) bad_option "$opt" ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || die "unexpected argument '$1' (try -h)"
[[ $ROUNDS =~ ^[1-9][0-9]{0,3}$ ]] || die "-r: '$ROUNDS' is not a whole number from 1 to 9999"
[ -x "$REPLAY" ] || die "replay binary '$REPLAY' not found (make build/bench-c/replay builds it)"
if [ "$CALLGRIND" = 1 ]; then
    command -v valgrind >/dev/null || die "valgrind is not installed (make setup-sys installs it)"
    command -v callgrind_annotate >/dev/null || die "callgrind_annotate is not installed (package valgrind)"
fi
# jemalloc's initial-exec TLS needs static TLS room when it is dlopen()ed
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.rtld.optional_static_tls=16384}

AVAILABLE=$("$REPLAY" --list-impls)
if [ -z "$IMPLS" ]; then
    IMPLS=$(echo $AVAILABLE)
else
    for i in $IMPLS; do
        grep -qx -- "$i" <<<"$AVAILABLE" || die "implementation '$i' is unknown or not available (available: $(echo $AVAILABLE))"
    done
fi
TRACES=""
for n in $NAMES; do
    [[ $n =~ ^[A-Za-z0-9_.-]+$ ]] || die "-t: '$n' is not a trace name"
    if [ -f "$DIR/$n.trace" ]; then TRACES="$TRACES $n"; else echo "traces.sh: no $DIR/$n.trace, skipped" >&2; fi
done
[ -n "$TRACES" ] || die "no traces in $DIR (make bench-traces records them)"

OUT=$(mktemp -d "${TMPDIR:-/tmp}/rp-traces.XXXXXX")
[ "$KEEP" = 1 ] || trap 'rm -rf "$OUT"' EXIT

field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<"$2"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
fmt() { awk -v v="$1" 'BEGIN { if (v == "n/a" || v == "") print "n/a"; else printf (v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f"), v }'; }
mib() { awk -v k="$1" 'BEGIN { if (k == "n/a" || k < 0) print "n/a"; else printf (k >= 10240 ? "%.1f" : "%.2f"), k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b <= 0) print "n/a"; else printf "%.2fx", a / b }'; }

echo "## Allocation traces replayed"
echo
echo "replay: $REPLAY; traces: $DIR; rounds: $ROUNDS; $(valgrind --version 2>/dev/null || echo 'no valgrind')"
echo "instructions: callgrind, replay loop left out; memory: peak RSS added during the replay;"
echo "wall: median ns per operation over $ROUNDS interleaved rounds"

declare -A INS TOT RSS NS
SUMMARY=""
for tr in $TRACES; do
    f=$DIR/$tr.trace
    info=$("$REPLAY" --info "$f") || die "replay --info $f failed"
    ops=$(field ops "$info")
    # wall time and memory, interleaved
    for ((r = 1; r <= ROUNDS; r++)); do
        for impl in $IMPLS; do
            line=$("$REPLAY" --impl "$impl" "$f" 2>"$OUT/err") || { cat "$OUT/err" >&2; die "replay --impl $impl $f failed"; }
            echo "$(field ns_per_op "$line")" >>"$OUT/$tr.$impl.ns"
            echo "$(field peak_rss_kb "$line")" >>"$OUT/$tr.$impl.kb"
        done
    done
    for impl in $IMPLS; do
        NS[$tr,$impl]=$(median <"$OUT/$tr.$impl.ns")
        RSS[$tr,$impl]=$(median <"$OUT/$tr.$impl.kb")
        INS[$tr,$impl]=n/a; TOT[$tr,$impl]=n/a
        if [ "$CALLGRIND" = 1 ]; then
            cg=$OUT/$tr.$impl.cg
            valgrind --tool=callgrind --toggle-collect=rpr_measured --callgrind-out-file="$cg" \
                "$REPLAY" --impl "$impl" "$f" >"$OUT/log" 2>&1 || { cat "$OUT/log" >&2; die "callgrind: replay --impl $impl $f failed"; }
            total=$(awk '/^totals:/ {print $2}' "$cg")
            [ -n "$total" ] || total=$(awk '/^summary:/ {print $2}' "$cg")
            [[ $total =~ ^[0-9]+$ ]] || die "no instruction total in $cg"
            loop=$(callgrind_annotate --threshold=100 --auto=no "$cg" \
                   | awk '$2 != "=>" && /replay\.c:/ { gsub(",", "", $1); s += $1 } END { print s + 0 }')
            INS[$tr,$impl]=$(awk -v t="$total" -v l="$loop" -v n="$ops" 'BEGIN { print (t - l) / n }')
            TOT[$tr,$impl]=$(awk -v t="$total" -v n="$ops" 'BEGIN { print t / n }')
        fi
    done

    echo
    echo "### $tr: $ops operations ($(field malloc "$info") malloc, $(field calloc "$info") calloc, $(field realloc "$info") realloc, $(field free "$info") free, $(field aligned "$info") aligned); at most $(field max_live "$info") live blocks, $(awk -v b="$(field peak_live_bytes "$info")" 'BEGIN { printf "%.1f", b / 1048576 }') MiB live at the peak; at least $(awk -v b="$(field peak_slot16_bytes "$info")" 'BEGIN { printf "%.1f", b / 1048576 }') MiB in 16-byte-aligned slots, $(awk -v b="$(field peak_hdr16_bytes "$info")" 'BEGIN { printf "%.1f", b / 1048576 }') MiB with a 16-byte header each"
    echo
    echo "| impl | instructions/op | incl. replay loop | peak RSS MiB | ns/op (median) | instructions vs mimalloc-heap | memory vs mimalloc-heap |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    mi=mimalloc-heap
    for impl in $IMPLS; do
        echo "| $impl | $(fmt "${INS[$tr,$impl]}") | $(fmt "${TOT[$tr,$impl]}") | $(mib "${RSS[$tr,$impl]}") | $(fmt "${NS[$tr,$impl]}") | $(ratio "${INS[$tr,$impl]}" "${INS[$tr,$mi]:-n/a}") | $(ratio "${RSS[$tr,$impl]}" "${RSS[$tr,$mi]:-n/a}") |"
    done
    for impl in arena-unsync arena-locked; do
        [ -n "${RSS[$tr,$impl]:-}" ] && [ -n "${RSS[$tr,$mi]:-}" ] || continue
        vi=$(awk -v a="${INS[$tr,$impl]}" -v b="${INS[$tr,$mi]}" 'BEGIN { if (a == "n/a" || b == "n/a") print "not measured"; else print (a <= b ? "met" : "MISSED") }')
        vm=$(awk -v a="${RSS[$tr,$impl]}" -v b="${RSS[$tr,$mi]}" 'BEGIN { print (a <= b ? "met" : "MISSED") }')
        SUMMARY="$SUMMARY| $tr | $impl | $(fmt "${INS[$tr,$impl]}") vs $(fmt "${INS[$tr,$mi]}"): $vi | $(mib "${RSS[$tr,$impl]}") vs $(mib "${RSS[$tr,$mi]}") MiB: $vm |"$'\n'
    done
done

if [ -n "$SUMMARY" ]; then
    echo
    echo "### Target: the arena at least matches mimalloc's heap on each trace"
    echo
    echo "| trace | pool | instructions/op, arena vs mimalloc-heap | peak RSS, arena vs mimalloc-heap |"
    echo "|---|---|---|---|"
    printf "%s" "$SUMMARY"
fi
[ "$KEEP" = 1 ] && echo && echo "callgrind output files kept in $OUT"
exit 0
