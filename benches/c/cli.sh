# cli.sh -- sourced by the benchmark drivers (callgrind.sh,
# callgrind_contention.sh, traces.sh, trace/record.sh): their error exit and
# the help and bad-option arms of their getopts loops.

# die MESSAGE...: "SCRIPT: MESSAGE" on stderr, exit status 2
die() { echo "${0##*/}: $*" >&2; exit 2; }

# usage: prints the script's header comment (line 2 up to `set -euo`), its -h
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0; }

# bad_option OPT: getopts' ':' (an option without its value) and '?' (an
# unknown option), with OPTARG the option's letter
bad_option() {
    if [ "$1" = : ]; then
        die "option -$OPTARG needs a value"
    fi
    die "unknown option -$OPTARG (try -h)"
}
