# smoke_lib.sh -- sourced by the benchmarks' smoke tests (smoke.sh,
# contention_smoke.sh, trace/smoke.sh), each of which defines fail() first.

# expect_exit_2 NAME 'message part' COMMAND [ARG...] -- COMMAND exits with
# status 2 and its stderr holds 'message part' (a fixed string); otherwise
# fail(), naming the command NAME followed by its arguments.
expect_exit_2() {
    local name=$1 msg=$2 cmd=$3; shift 3
    local err rc=0
    err=$("$cmd" "$@" 2>&1 >/dev/null) || rc=$?
    [ $rc -eq 2 ] || fail "$name $* exited $rc, expected 2"
    grep -qF -- "$msg" <<<"$err" || fail "$name $*: message '$err' lacks '$msg'"
}
