# What the benchmark scripts share. Source it after `set -euo pipefail`:
#   source "$(dirname "$0")/lib.sh"
# It moves to the repository root.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

bench_pids=()

# bench_setup PACKAGE...: a release build of the packages' binaries (none
# when BIN_DIR names a directory that holds them already, e.g. an older
# commit's build for a side-by-side run; a relative path is taken from the
# repository root), then $bin (that directory) and $work (a temporary
# directory). At exit every process started with `spawn` is stopped and
# $work removed.
bench_setup() {
    if [ -n "${BIN_DIR:-}" ]; then
        bin=$(cd "$BIN_DIR" && pwd)
    else
        local args=() package
        for package in "$@"; do args+=(-p "$package"); done
        cargo build --release -q "${args[@]}" --bins
        bin=$PWD/target/release
    fi
    work=$(mktemp -d)
    trap bench_cleanup EXIT
}

bench_cleanup() {
    local pid
    for pid in ${bench_pids[@]+"${bench_pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}

# spawn COMMAND...: runs COMMAND in the background until the script ends;
# its pid is left in $spawned.
spawn() {
    "$@" &
    spawned=$!
    bench_pids+=("$spawned")
}

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s at most).
wait_port() {
    local _
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 never opened" >&2
    exit 2
}

# start_test SERVER JSON: starts a load test on the perf-server at SERVER
# (http://host:port); prints the test's path.
start_test() {
    curl -s -D - -o /dev/null -XPOST "$1/performance/tests" -H 'content-type: application/json' -d "$2" \
        | awk 'tolower($1) == "location:" {print $2}' | tr -d '\r'
}

# peak_rss SCENARIO: runs `perf-server run SCENARIO` on one thread (report
# in $work/peak.json); prints its peak VmRSS in kB.
peak_rss() {
    "$bin/perf-server" run "$1" --threads 1 --out "$work/peak.json" > /dev/null &
    local pid=$! peak=0 rss
    while kill -0 "$pid" 2>/dev/null; do
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ -n "$rss" ] && [ "$rss" -gt "$peak" ] && peak=$rss
        sleep 0.2
    done
    wait "$pid" || true
    echo "$peak"
}
