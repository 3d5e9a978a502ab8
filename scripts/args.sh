# shellcheck shell=bash
# args.sh - sourced by every script here (the ops scripts through lib.sh): --help without side
# effects, and checks of options and numbers that exit 2 with a message.
#
# Sourcing it handles --help / -h anywhere before "--": the calling script's header comment on
# stdout, exit 0, before anything else runs (a file sourced without arguments sees its
# caller's). The functions below are for the script's own parsing.

# --help or -h anywhere before "--": the calling script's header comment on stdout, exit 0,
# before anything else runs (a sourced file sees its caller's arguments).
pd_help() {
    awk 'NR == 1 { next } /^# shellcheck/ { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}
for pd_a in "$@"; do
    case $pd_a in
        --) break ;;
        -h | --help) pd_help; exit 0 ;;
    esac
done
unset pd_a

# Prints "SCRIPT: message" and the hint to --help on stderr, exits 2.
pd_usage_error() {
    echo "$(basename "$0"): $*; --help shows the usage" >&2
    exit 2
}

# pd_positional ARGS...: POS gets the arguments that are not options. "--" ends the options
# (so an adapter named "-x" is given as "-- -x"); any other argument starting with "-" but "-"
# itself is an unknown option: exit 2.
pd_positional() {
    POS=()
    local a opts=1
    for a in "$@"; do
        if [ "$opts" = 1 ] && [ "$a" = -- ]; then opts=0; continue; fi
        if [ "$opts" = 1 ] && [ "${a#-}" != "$a" ] && [ "$a" != - ]; then pd_usage_error "unknown option $a"; fi
        POS+=("$a")
    done
}

# pd_int NAME VALUE MIN: VALUE must be a whole number >= MIN (exit 2 otherwise).
pd_int() {
    [[ $2 =~ ^[0-9]+$ ]] && [ "${#2}" -le 9 ] && [ "$2" -ge "$3" ] || pd_usage_error "$1 must be a whole number >= $3, not '$2'"
}

# pd_number NAME VALUE: VALUE must be a decimal number > 0 (e.g. 0.5, 3, 1e-4).
pd_number() {
    [[ $2 =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] && [[ $2 =~ [1-9] ]] || pd_usage_error "$1 must be a number > 0, not '$2'"
}

