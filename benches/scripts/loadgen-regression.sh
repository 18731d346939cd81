#!/usr/bin/env bash
# Calibration of `perf-server compare` on real runs.
#
# RUNS runs of one build (the target spends 100 us of CPU per request), with
# the target restarted every RESTART_EVERY runs, give the false-positive rate
# against a pinned first run and against a history of the 5 previous runs.
# Then SLOW runs at each slowdown (the target spends 105, 110, 120 us: about
# +5, +10, +20 % in p95 and -5, -9, -17 % in throughput) give the detection
# power at each size, against the pinned run and against the last 5 runs of
# the unchanged build. Change points over the whole p95 series should name
# exactly the three switches.
#
# Exit codes of `compare`: 0 unchanged, 1 regressed, 4 inconclusive; anything
# else is an error of this script, which stops it. Processes are ended by
# their PIDs.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-40}
SLOW=${SLOW:-10}
DUR=${DUR:-5}
RESTART_EVERY=${RESTART_EVERY:-10}
cargo build --release -q -p perf-server -p perf-benches --bins
cargo build --release -q -p perf-examples --example change_points
bin=target/release
work=$(mktemp -d)
server=""
stop_server() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=""
    fi
}
trap 'stop_server; rm -rf "$work"' EXIT
cat > "$work/s.yaml" <<YAML
load_tests:
  regress: {target: 'http://127.0.0.1:9104', duration: ${DUR}s, users: 8}
YAML
start_server() {
    taskset -c 1 "$bin/hello_server" --listen 127.0.0.1:9104 --threads 1 --work-us "$1" 2>/dev/null &
    server=$!
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/9104) 2>/dev/null && return 0
        sleep 0.1
    done
    echo "the target did not start" >&2
    exit 2
}
run() { taskset -c 0 "$bin/perf-server" run "$work/s.yaml" --threads 1 --out "$1" > /dev/null 2>&1; }

# judge FILE BASELINE... -> prints 0 (unchanged), 1 (regressed) or 4 (inconclusive)
judge() {
    local rc=0
    "$bin/perf-server" compare "$@" > "$work/last-judgement.txt" 2>&1 || rc=$?
    case $rc in
        0 | 1 | 4) echo "$rc" ;;
        *)
            echo "compare exited $rc (not a verdict):" >&2
            cat "$work/last-judgement.txt" >&2
            exit 2
            ;;
    esac
}

echo "==> $RUNS runs of one build, target restarted every $RESTART_EVERY"
for i in $(seq "$RUNS"); do
    if [ $(((i - 1) % RESTART_EVERY)) -eq 0 ]; then
        stop_server
        start_server 100
    fi
    run "$work/r$i.json"
done
stop_server
for work_us in 105 110 120; do
    echo "==> $SLOW runs with the target at $work_us us"
    start_server "$work_us"
    for j in $(seq "$SLOW"); do run "$work/s${work_us}_$j.json"; done
    stop_server
done

count() { # count VERDICT LIST...
    local want=$1 n=0
    shift
    for v in "$@"; do [ "$v" = "$want" ] && n=$((n + 1)); done
    echo "$n"
}

pinned=(); history=()
for i in $(seq 2 "$RUNS"); do
    pinned+=("$(judge "$work/r$i.json" --baseline "$work/r1.json")")
    if [ "$i" -gt 5 ]; then
        hist=(); for k in $(seq $((i - 5)) $((i - 1))); do hist+=(--baseline "$work/r$k.json"); done
        history+=("$(judge "$work/r$i.json" "${hist[@]}")")
    fi
done
echo
echo "same build:            regressed (false positives)   inconclusive   unchanged"
printf "  pinned first run     %3d / %-3d                     %3d            %3d\n" \
    "$(count 1 "${pinned[@]}")" "${#pinned[@]}" "$(count 4 "${pinned[@]}")" "$(count 0 "${pinned[@]}")"
printf "  history of 5 runs    %3d / %-3d                     %3d            %3d\n" \
    "$(count 1 "${history[@]}")" "${#history[@]}" "$(count 4 "${history[@]}")" "$(count 0 "${history[@]}")"

hist=(); for k in $(seq $((RUNS - 4)) "$RUNS"); do hist+=(--baseline "$work/r$k.json"); done
echo
echo "slowdown (target us):  detected against pinned   detected against history of 5   (inconclusive: pinned / history)"
for work_us in 105 110 120; do
    p=(); h=()
    for j in $(seq "$SLOW"); do
        p+=("$(judge "$work/s${work_us}_$j.json" --baseline "$work/r1.json")")
        h+=("$(judge "$work/s${work_us}_$j.json" "${hist[@]}")")
    done
    printf "  %3d                  %3d / %-3d                   %3d / %-3d                         (%d / %d)\n" \
        "$work_us" "$(count 1 "${p[@]}")" "$SLOW" "$(count 1 "${h[@]}")" "$SLOW" "$(count 4 "${p[@]}")" "$(count 4 "${h[@]}")"
done

python3 - "$work" "$RUNS" "$SLOW" <<'PY'
import json, statistics, sys
w, runs, slow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def fig(path, key):
    r = json.load(open(path))
    return r["latency_ms"]["p95"] if key == "p95" else r["rps"]
same = {k: [fig(f"{w}/r{i}.json", k) for i in range(1, runs + 1)] for k in ("p95", "rps")}
print()
print(f"p95 of {runs} runs of one build: median {statistics.median(same['p95']):.3f} ms, "
      f"sd {statistics.stdev(same['p95']) / statistics.median(same['p95']) * 100:.1f} %, "
      f"range {min(same['p95']):.3f} to {max(same['p95']):.3f}")
for us in (105, 110, 120):
    p95 = [fig(f"{w}/s{us}_{j}.json", "p95") for j in range(1, slow + 1)]
    rps = [fig(f"{w}/s{us}_{j}.json", "rps") for j in range(1, slow + 1)]
    print(f"target at {us} us: p95 {(statistics.median(p95) / statistics.median(same['p95']) - 1) * 100:+.1f} %, "
          f"throughput {(statistics.median(rps) / statistics.median(same['rps']) - 1) * 100:+.1f} %")
PY
files=(); for i in $(seq "$RUNS"); do files+=("$work/r$i.json"); done
for work_us in 105 110 120; do for j in $(seq "$SLOW"); do files+=("$work/s${work_us}_$j.json"); done; done
echo
echo "change points over the p95 series (switches injected before runs $((RUNS + 1)), $((RUNS + SLOW + 1)), $((RUNS + 2 * SLOW + 1))):"
target/release/examples/change_points "${files[@]}" | sed "s|$work/||g"
