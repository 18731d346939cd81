#!/usr/bin/env bash
# The latency of GET /performance/tests/{id} while that test sends 5,000 req/s:
# perf-server runs an open-model test against hello_server, and a second
# generator (`perf-server run`, 8 users) reads the test's status meanwhile.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RATE=${RATE:-5000}
bench_setup perf-server perf-benches
spawn "$bin/hello_server" --listen 127.0.0.1:9106 --threads 1 2>/dev/null
spawn "$bin/perf-server" serve --listen 127.0.0.1:8091 --data-dir "$work/data" > "$work/server.log" 2>&1
wait_port 8091
location=$(start_test http://127.0.0.1:8091 "{\"name\": \"background\", \"target\": \"http://127.0.0.1:9106\", \"duration\": \"40s\", \"rate\": \"${RATE}/s\", \"max_in_flight\": 2000}")
sleep 5
cat > "$work/read.yaml" <<YAML
load_tests:
  status_reads:
    target: http://127.0.0.1:8091
    duration: 20s
    users: 8
    requests: [{name: status, path: '$location'}]
YAML
"$bin/perf-server" run "$work/read.yaml" --out "$work/read.json" > /dev/null 2>&1 || true
sleep 17
curl -s "http://127.0.0.1:8091$location/results" > "$work/background.json"
python3 - "$work" "$location" <<'PY'
import json, sys
w, location = sys.argv[1], sys.argv[2]
r = json.load(open(f"{w}/read.json")); b = json.load(open(f"{w}/background.json"))
print(f"background test: {b['rps']:.0f} req/s for {b['duration_s']:.0f} s, errors {b['errors']}, dropped {b['dropped']}, p99 {b['latency_ms']['p99']:.2f} ms")
print(f"GET {location} (8 users): {r['rps']:.0f} req/s, errors {r['errors']}, p50 {r['latency_ms']['p50']:.2f} ms, p95 {r['latency_ms']['p95']:.2f} ms, p99 {r['latency_ms']['p99']:.2f} ms")
PY
