#!/usr/bin/env bash
# perf-server's own read endpoints under load on this machine, load
# generator included: wrk (1 thread, 32 connections, 15 s) and perf-loadgen
# (`perf-server run`, 32 users, 15 s, thresholds p95 < 50 ms, errors < 0.1 %,
# rps > 10000) in the same run, on /performance/metrics,
# /performance/tests/{id}, /performance/scaling/status and /health; RSS of
# perf-server after; then perf-server's /health against a bare actix-web
# hello world (same worker count) with wrk, and the ratio.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
command -v wrk > /dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
bench_setup perf-server perf-benches
spawn "$bin/hello_server" --listen 127.0.0.1:9109 --threads 1 2>/dev/null
spawn "$bin/perf-server" serve --listen 127.0.0.1:8095 --data-dir "$work/data" --log-level warn > "$work/server.log" 2>&1
server=$spawned
spawn "$bin/actix_hello" --listen 127.0.0.1:9110 --workers 2
wait_port 8095
wait_port 9110
location=$(start_test http://127.0.0.1:8095 '{"name": "seed", "target": "http://127.0.0.1:9109", "duration": "2s", "users": 4}')
sleep 4
echo "| endpoint | wrk req/s | wrk p50 / p99 | perf-loadgen req/s | perf-loadgen p95 | errors | thresholds |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for path in /performance/metrics "$location" /performance/scaling/status /health; do
  w=$(wrk -t1 -c32 -d15s --latency "http://127.0.0.1:8095$path")
  rps=$(echo "$w" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$w" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$w" | awk '$1 == "99%" {print $2}')
  cat > "$work/read.yaml" <<YAML
load_tests:
  read:
    target: http://127.0.0.1:8095
    duration: 15s
    users: 32
    requests: [{name: read, path: '$path'}]
    thresholds: ["p95 < 50ms", "error_rate < 0.1%", "rps > 10000"]
YAML
  if "$bin/perf-server" run "$work/read.yaml" --out "$work/read.json" > /dev/null 2>&1; then verdict=passed; else verdict=failed; fi
  python3 - "$work/read.json" "$path" "$rps" "$p50" "$p99" "$verdict" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
path, rps, p50, p99, verdict = sys.argv[2:]
name = "/performance/tests/{id}" if path.startswith("/performance/tests/") else path
print(f"| {name} | {float(rps):,.0f} | {p50} / {p99} | {r['rps']:,.0f} | {r['latency_ms']['p95']:.2f} ms | {100 * r['error_rate']:.3f} % | {verdict} |")
PY
done
echo
echo "perf-server RSS after the runs: $(( $(awk '/VmRSS/ {print $2}' /proc/$server/status) / 1024 )) MiB"
ours=$(wrk -t1 -c32 -d15s http://127.0.0.1:8095/health | awk '/Requests\/sec/ {print $2}')
theirs=$(wrk -t1 -c32 -d15s http://127.0.0.1:9110/health | awk '/Requests\/sec/ {print $2}')
python3 -c "print(f'/health: perf-server {float(\"$ours\"):,.0f} req/s, bare actix-web {float(\"$theirs\"):,.0f} req/s, ratio {float(\"$ours\") / float(\"$theirs\"):.2f}')"
