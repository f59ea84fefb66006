#!/usr/bin/env bash
# callgrind_contention.sh -- instructions per alloc+free pair of ONE worker
# thread of benches/c/contention.c, for the implementations given: the
# instructions of a thread allocating from a shared pool through its shard
# (rp-locked, arena-locked), from a pool it made itself (*/thread), as the
# creator of a shared pool (*/creator), or from glibc.
#
# Each implementation runs once under callgrind (--toggle-collect=work: the
# worker's loop and everything it calls) beside a run of glibc alone (the
# benchmark always runs glibc); the figure is the difference of the two runs'
# totals minus the loop's own instructions, over the pairs. Deterministic:
# the same binary and arguments give the same numbers on any load.
#
# usage: benches/c/callgrind_contention.sh [-b CONTENTION] [-s "SIZES"] [-n PAIRS] IMPL...
#   -b  the contention binary (default build/bench-c/contention)
#   -s  sizes, as for --size (default "64 mixed")
#   -n  pairs (default 200000)
set -euo pipefail
. "$(dirname "$0")/cli.sh"
BIN=build/bench-c/contention
SIZES="64 mixed"
PAIRS=200000
while getopts ":b:s:n:h" opt; do
    case $opt in
    b) BIN=$OPTARG ;;
    s) SIZES=$OPTARG ;;
    n) PAIRS=$OPTARG ;;
    h) usage ;;
    *) bad_option "$opt" ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || die "name at least one implementation (try -h)"
[[ $PAIRS =~ ^[1-9][0-9]{0,8}$ ]] || die "-n: '$PAIRS' is not a positive whole number"
[ -x "$BIN" ] || die "no contention binary at $BIN (make build/bench-c/contention)"
command -v valgrind >/dev/null || die "valgrind is not installed"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# totals IMPL SIZE: "program-total loop-own" instructions of one run
totals() {
    local f="$OUT/cg.out"
    valgrind --tool=callgrind --callgrind-out-file="$f" --toggle-collect=work \
        "$BIN" --threads 1 --only "$1" --no-peers --pairs "$PAIRS" --repeats 1 --size "$2" \
        >/dev/null 2>"$OUT/err" || { cat "$OUT/err" >&2; die "$1 --size $2 failed"; }
    callgrind_annotate "$f" 2>/dev/null |
        awk '/PROGRAM TOTALS/ { gsub(",", "", $1); t = $1 }
             /contention.c:work / { gsub(",", "", $1); w = $1 }
             END { if (t == "" || w == "") exit 1; print t, w }'
}

printf '| impl |'; for s in $SIZES; do printf ' %s |' "$s"; done; printf '\n|---|'
for s in $SIZES; do printf -- '---:|'; done; printf '\n'
declare -A base
for s in $SIZES; do base[$s]=$(totals glibc "$s"); done
for impl in "$@"; do
    printf '| %s |' "$impl"
    for s in $SIZES; do
        read -r g gw <<<"${base[$s]}"
        if [ "$impl" = glibc ]; then
            # glibc alone: its run's total minus its loop
            v=$(awk -v t="$g" -v w="$gw" -v n="$PAIRS" 'BEGIN { printf "%.1f", (t - w) / n }')
        else
            read -r t w <<<"$(totals "$impl" "$s")"
            v=$(awk -v t="$t" -v w="$w" -v g="$g" -v gw="$gw" -v n="$PAIRS" \
                'BEGIN { printf "%.1f", (t - g - (w - gw)) / n }')
        fi
        printf ' %s |' "$v"
    done
    printf '\n'
done
