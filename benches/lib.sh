# shellcheck shell=bash
# Sourced by every benches/*.sh: what they share, so that each prints its figures in one shape.
#
#   bench_start NAME ANCHOR "KNOB1 KNOB2 …" "$@"
#       at the top of a script: prints the header (date in UTC, `uptime` load average, cores, the
#       command with those environment knobs that are set, and what it is compared with) and
#       writes the same as the section's heading to $BENCH_TABLES.
#   … | bench_table "column 1" "column 2" …
#       prints the tab-separated rows on stdin as a markdown table, on stdout and appended to
#       $BENCH_TABLES (bench-out/tables.md), where bench_start has written the section's heading:
#       `## NAME`, the date and load it started at, and the command.
#   bench_text LINE…
#       a line of prose (a sub-heading, a check, a note) printed and appended the same way.
#
# `make bench` empties bench-out/tables.md first and prints it last, so its output has the shape
# of BENCHMARKS.md's sections. Also shared: say, need, need_bins, need_py, free_port, wait_port,
# median, timed and ratio.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_TABLES=${BENCH_TABLES:-$BENCH_ROOT/bench-out/tables.md}
mkdir -p "$(dirname "$BENCH_TABLES")"

# The load averages (1, 5 and 15 minutes) as `uptime` prints them.
bench_load() { uptime | sed 's/.*load averages*: //'; }

bench_start() {
    BENCH_NAME=$1
    local anchor=$2 knobs=$3 k cmd=""
    shift 3
    for k in $knobs; do
        if [ -n "${!k+set}" ]; then cmd+="$k=$(printf '%q' "${!k}") "; fi
    done
    cmd+="bash benches/$(basename "$0")"
    [ $# -gt 0 ] && cmd+=" $(printf '%q ' "$@")" && cmd=${cmd% }
    BENCH_CMD=$cmd
    BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
    BENCH_LOAD=$(bench_load)
    echo "# $BENCH_NAME: $BENCH_DATE, load average $BENCH_LOAD, $(nproc) cores"
    echo "# \$ $BENCH_CMD"
    echo "# compared with: $anchor"
    {
        printf '\n## %s\n\n' "$BENCH_NAME"
        printf 'Taken %s, load average %s (1, 5, 15 min) at the start, %s cores:\n\n' \
            "$BENCH_DATE" "$BENCH_LOAD" "$(nproc)"
        printf '```\n%s\n```\n\nCompared with: %s\n' "$BENCH_CMD" "$anchor"
    } >> "$BENCH_TABLES"
}

bench_text() {
    printf '\n%s\n' "$@"
    printf '\n%s\n' "$@" >> "$BENCH_TABLES"
}

bench_table() {
    local table
    table=$(awk -F'\t' -v head="$(printf '%s\t' "$@")" '
        BEGIN {
            n = split(head, h, "\t") - 1
            line = "|"; rule = "|"
            for (i = 1; i <= n; i++) { line = line " " h[i] " |"; rule = rule (i == 1 ? "---|" : "---:|") }
            print line; print rule
        }
        NF { line = "|"; for (i = 1; i <= n; i++) line = line " " (i <= NF && $i != "" ? $i : "-") " |"; print line }')
    printf '\n%s\n' "$table"
    printf '\n%s\n' "$table" >> "$BENCH_TABLES"
}

# --- helpers the scripts used to copy from each other ---------------------------------------
say() { printf '%s\n' "$*" >&2; }

# need COMMAND [PACKAGE]: apt-get installs PACKAGE (default COMMAND) if COMMAND is missing.
need() {
    command -v "$1" >/dev/null && return 0
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    say "installing ${2:-$1}"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${2:-$1}" >/dev/null
}

# need_bins DIR NAME…: every NAME is an executable in DIR, or the script stops.
need_bins() {
    local dir=$1 b
    shift
    for b in "$@"; do
        [ -x "$dir/$b" ] || { say "$(basename "$0"): $dir/$b is missing; run cargo build --release first"; exit 2; }
    done
}

# need_py MODULE…: the benchmarks' venv (bench-out/venv) with the Python packages MODULE… (import
# name = package name: duckdb, chdb), installed by pip if missing; sets PY to its python.
need_py() {
    local venv=$BENCH_ROOT/bench-out/venv m missing=()
    PY=$venv/bin/python
    [ -x "$PY" ] || python3 -m venv "$venv"
    for m in "$@"; do "$PY" -c "import $m" 2>/dev/null || missing+=("$m"); done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]} into $venv"
        "$PY" -m pip install -q "${missing[@]}" >&2
    fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
    local _
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    say "nothing listens on port $1"
    return 1
}

# median: of the numbers on stdin, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# timed CMD…: runs CMD under /usr/bin/time; sets WALL, CPU (user + sys) in seconds and RSS in KB.
# shellcheck disable=SC2034 # WALL, CPU and RSS are for the caller
timed() {
    local f rc=0 user sys
    f=$(mktemp)
    /usr/bin/time -f '%e %U %S %M' -o "$f" "$@" || rc=$?
    read -r WALL user sys RSS < "$f"
    rm -f "$f"
    CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')
    return "$rc"
}

# ratio A B [FORMAT]: A / B, printed with FORMAT (default %.2f), or - if B is empty or 0.
ratio() {
    awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { if (b == "" || b + 0 == 0 || a == "") print "-"; else printf f "\n", a / b }'
}
