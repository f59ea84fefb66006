#!/usr/bin/env bash
# record.sh -- records the allocation traces that benches/c/traces.sh replays:
#   cc1      gcc's compiler proper, -O2 on a generated 5,000-line C file
#            (what `gcc -O2 -c` runs; the file comes from benches/preload)
#   python3  PYTHONMALLOC=malloc, JSON dump/load, regex and a Counter over
#            10,000 records, 2 rounds (pywork.py; PYTHONHASHSEED=0)
#   sqlite3  20,000 INSERTs into an indexed table in one transaction, then
#            grouping, sorting, LIKE and UPDATE queries
#   churn    10,000 live mixed-size blocks, 1,000,000 random replacements
#            (churn.c)
# Each program runs once under rptrace.so; a trace is then read back by
# `replay --info` (which checks every record) and its figures printed.
#
# usage: benches/c/trace/record.sh -o DIR -l RPTRACE_SO -c CHURN -r REPLAY [NAME...]
#   NAME: cc1 python3 sqlite3 churn (default: all)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../cli.sh"
REPO=$(cd "$HERE/../../.." && pwd)
OUT="" SO="" CHURN="" REPLAY=""
while getopts ":o:l:c:r:h" opt; do
    case $opt in
    o) OUT=$OPTARG ;; l) SO=$OPTARG ;; c) CHURN=$OPTARG ;; r) REPLAY=$OPTARG ;;
    h) usage ;;
    *) bad_option "$opt" ;;
    esac
done
shift $((OPTIND - 1))
NAMES=${*:-cc1 python3 sqlite3 churn}
[ -n "$OUT" ] || die "-o DIR is required"
for f in "$SO" "$CHURN" "$REPLAY"; do
    [ -n "$f" ] && [ -e "$f" ] || die "-l, -c and -r must name the built rptrace.so, churn and replay"
done
SO=$(cd "$(dirname "$SO")" && pwd)/$(basename "$SO")
mkdir -p "$OUT/work"
OUT=$(cd "$OUT" && pwd)
W=$OUT/work

# record NAME [VAR=VALUE...] command...: runs the command under the recorder
# (through env, which is not itself recorded), output to NAME.log
record() {
    local name=$1; shift
    rm -f "$OUT/$name.trace"
    if ! env RPTRACE_FILE="$OUT/$name.trace" LD_PRELOAD="$SO" "$@" >"$W/$name.log" 2>&1; then
        cat "$W/$name.log" >&2
        die "$name: the program failed"
    fi
    grep -q '^rptrace:' "$W/$name.log" && { cat "$W/$name.log" >&2; die "$name: the recorder complained"; }
    [ -s "$OUT/$name.trace" ] || die "$name: no trace written"
    "$REPLAY" --info "$OUT/$name.trace"
}

for name in $NAMES; do
    case $name in
    cc1)
        cc1=$(gcc -print-prog-name=cc1)
        [ -x "$cc1" ] || die "gcc's cc1 not found (gcc -print-prog-name=cc1 says '$cc1')"
        python3 -c "import sys; sys.path.insert(0, sys.argv[1]); import overhead, pathlib; \
overhead.c_source(pathlib.Path(sys.argv[2]), 5000)" "$REPO/benches/preload" "$W"
        record cc1 "$cc1" -quiet -O2 "$W/big.c" -o "$W/big.s" ;;
    python3)
        py=$(command -v /usr/bin/python3 || command -v python3) || die "python3 not found"
        record python3 PYTHONMALLOC=malloc PYTHONHASHSEED=0 "$py" -s "$HERE/pywork.py" 10000 2 ;;
    sqlite3)
        command -v sqlite3 >/dev/null || die "sqlite3 not found (make bench-traces installs it)"
        awk 'BEGIN {
            print "PRAGMA journal_mode=OFF;"
            print "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, tag TEXT);"
            print "CREATE INDEX t_tag ON t(tag);"
            print "BEGIN;"
            for (i = 0; i < 20000; i++)
                printf "INSERT INTO t(name, score, tag) VALUES(%cname-%d%c, %.1f, %ctag%d%c);\n",
                       39, (i * 7919) % 1000003, 39, i * 0.5, 39, i % 97, 39
            print "COMMIT;"
            print "SELECT count(*), sum(score), count(DISTINCT tag) FROM t;"
            print "SELECT tag, count(*), avg(score) FROM t GROUP BY tag ORDER BY 2 DESC, 1 LIMIT 5;"
            print "SELECT name FROM t WHERE name LIKE %cname-99%%c ORDER BY score DESC LIMIT 10;"
            print "UPDATE t SET score = score * 2 WHERE tag IN (%ctag1%c, %ctag2%c);"
            print "SELECT a.tag, count(*) FROM t a JOIN t b ON a.id = b.id + 1 AND a.tag = b.tag GROUP BY a.tag LIMIT 3;"
        }' | sed "s/%c/'/g" >"$W/work.sql"
        rm -f "$W/bench.db"
        record sqlite3 sqlite3 "$W/bench.db" ".read $W/work.sql" ;;
    churn)
        record churn "$CHURN" 10000 1000000 ;;
    *) die "unknown trace '$name' (cc1 python3 sqlite3 churn)" ;;
    esac
done
