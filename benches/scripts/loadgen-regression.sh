#!/usr/bin/env bash
# Regression detection on real runs: RUNS repeated runs of one build (the
# target spends 100 us of CPU per request) give the false-positive rate, both
# against a pinned first run and against a history of the 5 previous runs;
# then the target spends SLOW_WORK us (127: about +20 % p95) for SLOW runs, which should
# read `regressed`. Change points over the whole series should name the switch.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-20}
SLOW=${SLOW:-5}
DUR=${DUR:-5}
cargo build --release -q -p perf-server -p perf-benches --bins
cargo build --release -q -p perf-examples --example change_points
bin=target/release
work=$(mktemp -d)
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/s.yaml" <<YAML
load_tests:
  regress: {target: 'http://127.0.0.1:9104', duration: ${DUR}s, users: 8}
YAML
start_server() {
    taskset -c 1 "$bin/hello_server" --listen 127.0.0.1:9104 --threads 1 --work-us "$1" 2>/dev/null &
    server=$!
    sleep 0.5
}
run() { taskset -c 0 "$bin/perf-server" run "$work/s.yaml" --threads 1 --out "$1" > /dev/null 2>&1; }
judge() { "$bin/perf-server" compare "$@" > /dev/null 2>&1 && echo 0 || echo 1; }
start_server 100
for i in $(seq "$RUNS"); do run "$work/r$i.json"; done
kill $server; wait $server 2>/dev/null || true
start_server "${SLOW_WORK:-127}"
for j in $(seq "$SLOW"); do run "$work/s$j.json"; done
fp_pinned=0; fp_history=0; n_pinned=0; n_history=0
for i in $(seq 2 "$RUNS"); do
    fp_pinned=$((fp_pinned + $(judge "$work/r$i.json" --baseline "$work/r1.json"))); n_pinned=$((n_pinned + 1))
    if [ "$i" -gt 5 ]; then
        hist=(); for k in $(seq $((i - 5)) $((i - 1))); do hist+=(--baseline "$work/r$k.json"); done
        fp_history=$((fp_history + $(judge "$work/r$i.json" "${hist[@]}"))); n_history=$((n_history + 1))
    fi
done
det_pinned=0; det_history=0
hist=(); for k in $(seq $((RUNS - 4)) "$RUNS"); do hist+=(--baseline "$work/r$k.json"); done
for j in $(seq "$SLOW"); do
    det_pinned=$((det_pinned + $(judge "$work/s$j.json" --baseline "$work/r1.json")))
    det_history=$((det_history + $(judge "$work/s$j.json" "${hist[@]}")))
done
python3 - "$work" "$RUNS" "$SLOW" <<'PY'
import json, statistics, sys
w, runs, slow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
same = [json.load(open(f"{w}/r{i}.json"))["latency_ms"]["p95"] for i in range(1, runs + 1)]
slower = [json.load(open(f"{w}/s{j}.json"))["latency_ms"]["p95"] for j in range(1, slow + 1)]
print(f"p95 of {runs} runs of one build: median {statistics.median(same):.3f} ms, min {min(same):.3f}, max {max(same):.3f} (spread {(max(same)-min(same))/statistics.median(same)*100:.1f} %)")
print(f"p95 after the slowdown: median {statistics.median(slower):.3f} ms ({(statistics.median(slower)/statistics.median(same)-1)*100:+.1f} %)")
PY
echo "false positives: pinned baseline $fp_pinned/$n_pinned, history of 5 $fp_history/$n_history"
echo "slowdown detected: pinned baseline $det_pinned/$SLOW, history of 5 $det_history/$SLOW"
files=(); for i in $(seq "$RUNS"); do files+=("$work/r$i.json"); done; for j in $(seq "$SLOW"); do files+=("$work/s$j.json"); done
target/release/examples/change_points "${files[@]}" | sed "s|$work/||g"
