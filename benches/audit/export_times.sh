#!/bin/sh
# Wall time, user CPU time and peak memory of `ringpool-audit show` on one report, for every --by and
# --format, one run each (a shared machine inflates wall time: rerun to compare).
#
#   sh benches/audit/export_times.sh REPORT OUTDIR [BY...]
#
# Each output stays in OUTDIR as BY.FORMAT (compare two versions with diff -r).
# REPORT: e.g. python3 benches/audit/big_report.py /tmp/r100k.json --stacks 100000
set -eu
report=$1
outdir=$2
shift 2
[ $# -gt 0 ] || set -- stack function site
cli=${RINGPOOL_AUDIT:-ringpool-audit}
mkdir -p "$outdir"
for by in "$@"; do
  for format in table csv json folded pprof speedscope html; do
    out="$outdir/$by.$format"
    /usr/bin/time -o "$outdir/.time" -f "%e s %U user %M KiB" $cli show "$report" --by "$by" \
      --format "$format" -o "$out" --force >/dev/null 2>"$outdir/.stderr" || true
    took=$(tail -n 1 "$outdir/.time")
    printf '%-9s %-11s %s\n' "$by" "$format" "$took"
  done
done
