#!/usr/bin/env bash
# callgrind.sh -- instructions per operation for ringpool and its peers.
#
# Runs `bench --one WORKLOAD --impl IMPL --count N` under
#   valgrind --tool=callgrind --toggle-collect=rpb_measured
# so only the measured part is counted, and prints markdown tables:
#   1. instructions per alloc+free pair, per size, with the ratio to glibc;
#   2. instructions per block for allocating N mixed-size blocks;
#   3. instructions per block for freeing N mixed-size blocks: bulk destroy
#      vs one by one in random order;
#   4. instructions of one rp_pool_stats call with N outstanding blocks;
#   5. checked pools (RP_POOL_CHECKED: rp-checked, arena-checked) against the
#      same backing unchecked and locked (rp-locked, arena-locked): pair,
#      fill and destroy, with the ratio (target: a pair <= 2x unchecked).
# "allocator" columns leave out the instructions of the benchmark's own loop
# (everything callgrind attributes to bench.c), "total" columns include them.
# Callgrind counts are deterministic: the same binary and arguments give the
# same numbers whatever else the machine is doing.
#
# usage: benches/c/callgrind.sh [-q] [-b BENCH] [-i IMPL,...] [-s "SIZES"]
#                               [-n PAIRS] [-N BLOCKS] [-k]
#   -q        quick: 2000 pairs, 2000 blocks, sizes "64 mixed" (a smoke run)
#   -b BENCH  the bench binary (default build/bench/bench)
#   -i LIST   implementations, comma-separated (default: all that load;
#             see `bench --list-impls`)
#   -s SIZES  pair sizes (default "16 64 256 4096 mixed")
#   -n PAIRS  pairs per run (default 200000)
#   -N BLOCKS blocks for the allocation and destroy tables (default 1000000)
#   -k        keep the callgrind output files (their directory is printed),
#             for callgrind_annotate
set -euo pipefail

. "$(dirname "$0")/cli.sh"

BENCH=build/bench/bench
IMPLS=""
SIZES="16 64 256 4096 mixed"
PAIRS=200000
BLOCKS=1000000
KEEP=0
while getopts ":qb:i:s:n:N:kh" opt; do
    case $opt in
    q) PAIRS=2000; BLOCKS=2000; SIZES="64 mixed" ;;
    b) BENCH=$OPTARG ;;
    i) IMPLS=${OPTARG//,/ } ;;
    s) SIZES=$OPTARG ;;
    n) PAIRS=$OPTARG ;;
    N) BLOCKS=$OPTARG ;;
    k) KEEP=1 ;;
    h) usage ;;
    *) bad_option "$opt" ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || die "unexpected argument '$1' (try -h)"

is_count() { [[ $1 =~ ^[1-9][0-9]{0,9}$ ]]; }
is_count "$PAIRS" || die "-n: '$PAIRS' is not a positive whole number"
is_count "$BLOCKS" || die "-N: '$BLOCKS' is not a positive whole number"
for s in $SIZES; do
    [ "$s" = mixed ] || is_count "$s" || die "-s: '$s' is neither a size in bytes nor 'mixed'"
done
[ -n "${SIZES// /}" ] || die "-s: no sizes given"
command -v valgrind >/dev/null || die "valgrind is not installed (make setup-sys installs it)"
command -v callgrind_annotate >/dev/null || die "callgrind_annotate is not installed (package valgrind)"
[ -x "$BENCH" ] || die "bench binary '$BENCH' not found or not executable (make bench-c builds it)"

AVAILABLE=$("$BENCH" --list-impls)
if [ -z "$IMPLS" ]; then
    IMPLS=$AVAILABLE
else
    for i in $IMPLS; do
        grep -qx -- "$i" <<<"$AVAILABLE" || die "implementation '$i' is unknown or not installed (available: $(echo $AVAILABLE))"
    done
fi
has() { grep -qw -- "$1" <<<" $IMPLS "; }
has glibc || die "glibc must be among the implementations: every ratio is to glibc"

OUT=$(mktemp -d "${TMPDIR:-/tmp}/rp-callgrind.XXXXXX")
[ "$KEEP" = 1 ] || trap 'rm -rf "$OUT"' EXIT

# measure WORKLOAD IMPL COUNT SIZE -> sets TOTAL and LOOP (instructions)
measure() {
    local w=$1 impl=$2 n=$3 size=$4
    local f="$OUT/$w.$impl.$size.out"
    if ! valgrind --tool=callgrind --toggle-collect=rpb_measured \
            --callgrind-out-file="$f" "$BENCH" --one "$w" --impl "$impl" \
            --count "$n" --size "$size" >"$OUT/log" 2>&1; then
        cat "$OUT/log" >&2
        die "bench --one $w --impl $impl --count $n --size $size failed under callgrind"
    fi
    TOTAL=$(awk '/^totals:/ {print $2}' "$f")
    [ -n "$TOTAL" ] || TOTAL=$(awk '/^summary:/ {print $2}' "$f")
    [[ $TOTAL =~ ^[0-9]+$ ]] || die "no instruction total in $f"
    # self cost of the benchmark's own code (loops, dispatch): bench.c lines
    LOOP=$(callgrind_annotate --threshold=100 --auto=no "$f" \
           | awk '$2 != "=>" && /bench\.c:/ { gsub(",", "", $1); s += $1 } END { print s + 0 }')
    [[ $LOOP =~ ^[0-9]+$ ]] || die "callgrind_annotate failed on $f"
}

div() {   # a / b, with more decimals for small values
    awk -v a="$1" -v b="$2" 'BEGIN { v = a / b; f = v >= 10 ? "%.1f" : v >= 1 ? "%.2f" : "%.3f"; printf f, v }'
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "n/a"; else { v = a / b; printf (v >= 100 ? "%.0fx" : "%.2fx"), v } }'
}
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r + 0 <= t + 0) ? "met" : "MISSED" }'; }

echo "## Instruction counts (valgrind --tool=callgrind --toggle-collect=rpb_measured)"
echo
echo "bench: $BENCH; pairs per run: $PAIRS; blocks: $BLOCKS; valgrind: $(valgrind --version)"

# ---- 1. alloc+free pairs
declare -A PAIR
echo
echo "### Instructions per alloc+free pair: allocator (total incl. the loop), allocator ratio to glibc"
echo
hdr="| impl |"; sep="|---|"
for s in $SIZES; do hdr="$hdr $s |"; sep="$sep---:|"; done
echo "$hdr target |"
echo "$sep---|"
declare -A TARGET=([rp-unsync]=1.2 [rp-locked]=1.35 [arena-unsync]=0.7 [arena-locked]=0.9)
for impl in glibc $IMPLS; do
    [ "$impl" = apr-pool ] && continue          # no per-block free
    [ "$impl" = glibc ] && [ -n "${PAIR[glibc,done]:-}" ] && continue
    row="| $impl |"; worst=0
    for s in $SIZES; do
        measure pair "$impl" "$PAIRS" "$s"; total=$TOTAL; loop=$LOOP
        a=$(div $((total - loop)) "$PAIRS"); t=$(div "$total" "$PAIRS")
        PAIR[$impl,$s]=$a
        if [ "$impl" = glibc ]; then
            row="$row $a ($t) |"
        else
            r=$(ratio "$a" "${PAIR[glibc,$s]}")
            row="$row $a ($t) $r |"
            worst=$(awk -v w="$worst" -v r="${r%x}" 'BEGIN { print (r > w) ? r : w }')
        fi
    done
    PAIR[$impl,done]=1
    if [ -n "${TARGET[$impl]:-}" ]; then
        row="$row <= ${TARGET[$impl]}x: $(verdict "$worst" "${TARGET[$impl]}") (worst ${worst}x) |"
    else
        row="$row |"
    fi
    echo "$row"
done

# ---- 2. allocation of BLOCKS mixed-size blocks
declare -A FILL DESTROY
echo
echo "### Instructions per block: allocating $BLOCKS mixed-size blocks into a fresh pool"
echo
echo "| impl | allocator | total incl. loop | target |"
echo "|---|---:|---:|---|"
for impl in $IMPLS; do
    measure fill "$impl" "$BLOCKS" mixed; total=$TOTAL; loop=$LOOP
    a=$(div $((total - loop)) "$BLOCKS")
    tgt=""
    case $impl in arena-unsync|arena-locked) tgt="<= 70: $(verdict "$a" 70)" ;; esac
    FILL[$impl]=$a
    echo "| $impl | $a | $(div "$total" "$BLOCKS") | $tgt |"
done

# ---- 3. freeing BLOCKS mixed-size blocks
echo
echo "### Instructions per block: freeing $BLOCKS outstanding mixed-size blocks"
echo
echo "| impl | how | allocator | total incl. loop | glibc free-each / this | target |"
echo "|---|---|---:|---:|---:|---|"
measure free-each glibc "$BLOCKS" mixed; gtotal=$TOTAL; gloop=$LOOP
ga=$(div $((gtotal - gloop)) "$BLOCKS")
echo "| glibc | free each, random order | $ga | $(div "$gtotal" "$BLOCKS") | 1.00x | |"
for impl in $IMPLS; do
    [ "$impl" = glibc ] && continue
    for how in free-each destroy; do
        [ "$how" = free-each ] && [ "$impl" = apr-pool ] && continue
        measure "$how" "$impl" "$BLOCKS" mixed; total=$TOTAL; loop=$LOOP
        a=$(div $((total - loop)) "$BLOCKS")
        label="free each, random order"; [ "$how" = destroy ] && label="bulk destroy"
        tgt=""
        case $impl,$how in arena-unsync,destroy|arena-locked,destroy) tgt="<= 5: $(verdict "$a" 5)" ;; esac
        [ "$how" = destroy ] && DESTROY[$impl]=$a
        echo "| $impl | $label | $a | $(div "$total" "$BLOCKS") | $(ratio "$ga" "$a") | $tgt |"
    done
done

# ---- 4. stats
echo
echo "### Instructions of one rp_pool_stats call with $BLOCKS outstanding blocks (64 tags)"
echo
echo "| impl | instructions |"
echo "|---|---:|"
for impl in $IMPLS; do
    case $impl in rp-*|arena-*) ;; *) continue ;; esac
    measure stats "$impl" "$BLOCKS" mixed; total=$TOTAL; loop=$LOOP
    echo "| $impl | $((total - loop)) |"
done

# ---- 5. checked pools against the same pools unchecked
if has rp-checked || has arena-checked; then
    echo
    echo "### Checked pools: instructions per operation, ratio to the same backing unchecked (locked)"
    echo
    echo "| pool | vs | pair ($SIZES) | fill per block | destroy per block | target |"
    echo "|---|---|---|---:|---:|---|"
    for pair in rp-checked:rp-locked arena-checked:arena-locked; do
        c=${pair%%:*}; u=${pair##*:}
        has "$c" && has "$u" || continue
        cells=""; worst=0
        for s in $SIZES; do
            r=$(ratio "${PAIR[$c,$s]}" "${PAIR[$u,$s]}")
            cells="$cells${cells:+, }${PAIR[$c,$s]} (${r})"
            worst=$(awk -v w="$worst" -v r="${r%x}" 'BEGIN { print (r > w) ? r : w }')
        done
        echo "| $c | $u | $cells | ${FILL[$c]} ($(ratio "${FILL[$c]}" "${FILL[$u]}")) |" \
             "${DESTROY[$c]} | pair <= 2x: $(verdict "$worst" 2) (worst ${worst}x) |"
    done
fi
[ "$KEEP" = 1 ] && echo && echo "callgrind output files kept in $OUT"
exit 0
