#!/usr/bin/env bash
# coro.sh -- what a pool that records stacks pays for an allocation made on
# a stack of the program's own (makecontext coroutines on stacks from mmap)
# and on the thread's own stack (benches/c/coro.c), at several call depths.
#
# For each depth and each place (own, coro) it runs coro with the pool
# recording stacks and without (--stacks 1 / 0): both make the same
# switches, so the difference is the stack capture's. Prints two markdown
# tables, per alloc+free pair:
#   1. instructions, by callgrind (--toggle-collect=coro_measured; system
#      calls count as one instruction each, not their kernel time);
#   2. wall time, the median of R rounds of N switches (16 pairs each).
#
# usage: benches/c/coro.sh [-b CORO] [-d "DEPTHS"] [-n N] [-c N] [-r R]
#   -b CORO    the coro binary (default build/bench-c/coro)
#   -d DEPTHS  call depths below the loop, each DEPTH or DEPTH:FRAME (FRAME
#              bytes of each frame's own: 32, the default, or 256; default
#              "4 16 64 64:256": the last climbs some 4 pages of stack)
#   -n N       switches per wall round (default 20000)
#   -c N       switches under callgrind (default 2000)
#   -r R       wall rounds (default 11)
set -euo pipefail

. "$(dirname "$0")/cli.sh"

CORO=build/bench-c/coro
DEPTHS="4 16 64 64:256"
N=20000
CN=2000
ROUNDS=11
while getopts ":b:d:n:c:r:h" opt; do
    case $opt in
    b) CORO=$OPTARG ;;
    d) DEPTHS=$OPTARG ;;
    n) N=$OPTARG ;;
    c) CN=$OPTARG ;;
    r) ROUNDS=$OPTARG ;;
    h) usage ;;
    *) bad_option "$opt" ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || die "unexpected argument '$1' (try -h)"
is_count() { [[ $1 =~ ^[1-9][0-9]{0,8}$ ]]; }
is_count "$N" || die "-n: '$N' is not a positive whole number"
is_count "$CN" || die "-c: '$CN' is not a positive whole number"
is_count "$ROUNDS" || die "-r: '$ROUNDS' is not a positive whole number"
for d in $DEPTHS; do [[ $d =~ ^[0-9]{1,4}(:[0-9]{1,4})?$ ]] || die "-d: '$d' is not DEPTH or DEPTH:FRAME"; done
[ -x "$CORO" ] || die "'$CORO' not found or not executable (make $CORO)"
command -v valgrind >/dev/null || die "valgrind is not installed (make setup-sys installs it)"

OUT=$(mktemp -d "${TMPDIR:-/tmp}/rp-coro.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
PAIRS=16

frame() { case $1 in *:*) echo "${1#*:}" ;; *) echo 32 ;; esac; }

# instructions per pair: callgrind's total for coro_measured / (switches * 16)
instr() {
    valgrind --tool=callgrind --toggle-collect=coro_measured --callgrind-out-file="$OUT/cg.out" \
        "$CORO" --on "$1" --depth "${2%%:*}" --frame "$(frame "$2")" --stacks "$3" --count "$CN" --rounds 0 2>"$OUT/err" \
        || { cat "$OUT/err" >&2; die "callgrind run failed"; }
    local total
    total=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$OUT/err")
    [ -n "$total" ] || die "no total in callgrind's output"
    awk -v t="$total" -v n="$CN" -v p=$PAIRS 'BEGIN { printf "%.1f", t / (n * p) }'
}
wall() { "$CORO" --on "$1" --depth "${2%%:*}" --frame "$(frame "$2")" --stacks "$3" --count "$N" --rounds "$ROUNDS"; }
diff1() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }

# table TITLE MEASURE: one row per depth, MEASURE (instr or wall) run with
# and without stacks on each place, and the capture's share (the difference)
table() {
    echo "$1"
    echo
    echo "| depth[:frame] | own: no stacks | own: stacks | own: capture | coro: no stacks | coro: stacks | coro: capture |"
    echo "|---:|---:|---:|---:|---:|---:|---:|"
    local d o0 o1 c0 c1
    for d in $DEPTHS; do
        o0=$($2 own "$d" 0); o1=$($2 own "$d" 1)
        c0=$($2 coro "$d" 0); c1=$($2 coro "$d" 1)
        echo "| $d | $o0 | $o1 | $(diff1 "$o1" "$o0") | $c0 | $c1 | $(diff1 "$c1" "$c0") |"
    done
}

table "Instructions per alloc+free pair (callgrind, $CN switches of $PAIRS pairs)" instr
echo
table "Wall ns per alloc+free pair (median of $ROUNDS rounds of $N switches of $PAIRS pairs)" wall
