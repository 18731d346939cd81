#!/usr/bin/env bash
# perf-server's resident memory idle and under load: the release binary,
# idle for 10 s, then `wrk` (32 connections, 1 thread, 20 s) on
# /performance/metrics and /performance/metrics/memory, RSS polled every
# 0.5 s from /proc; then the memory endpoint's own view (budget, leak verdict).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk > /dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
cargo build --release -q -p perf-server
work=$(mktemp -d)
target/release/perf-server serve --listen 127.0.0.1:8093 --data-dir "$work/data" > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8093) 2>/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
sleep 10
idle=$(rss)
peak=0
( while kill -0 $server 2>/dev/null; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" > "$work/peak"; sleep 0.5; done ) &
poller=$!
wrk -t1 -c32 -d20s http://127.0.0.1:8093/performance/metrics > "$work/wrk1.txt"
wrk -t1 -c32 -d20s http://127.0.0.1:8093/performance/metrics/memory > "$work/wrk2.txt"
kill $poller 2>/dev/null || true
after=$(rss)
echo "idle RSS: $((idle / 1024)) MiB"
echo "peak RSS under load: $(( $(cat "$work/peak") / 1024 )) MiB"
echo "RSS after load: $((after / 1024)) MiB"
grep -h "Requests/sec" "$work/wrk1.txt" "$work/wrk2.txt" | sed 's/^/wrk /'
curl -s http://127.0.0.1:8093/performance/metrics/memory > "$work/memory.json"
python3 - "$work/memory.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
a = m["allocator"]
mib = 2 ** 20
print(f"allocator: allocated {a['allocated_bytes'] / mib:.1f} MiB, resident {a['resident_bytes'] / mib:.1f} MiB, fragmentation {a['fragmentation_bytes'] / mib:.2f} MiB")
b = m["budget"]
print(f"budget: {b['pressure']}, used {100 * b['used_fraction']:.1f} % of {b['budget']['limit'] / mib:.0f} MiB")
print(f"leak: {m['leak']['status']} ({m['leak']['message']})")
PY
