#!/usr/bin/env bash
# Soak: perf-loadgen's open model at RATE req/s for DUR against hello_server;
# the generator's RSS is sampled every 10 s. After a one-minute warm-up the
# RSS should stay flat (growth under 5 MB).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RATE=${RATE:-3000}
DUR=${DUR:-600}
bench_setup perf-server perf-benches
spawn "$bin/hello_server" --listen 127.0.0.1:9103 --threads 1 2>/dev/null
sleep 0.5
cat > "$work/soak.yaml" <<YAML
load_tests:
  soak: {target: 'http://127.0.0.1:9103', duration: ${DUR}s, rate: ${RATE}/s, max_in_flight: 2000}
YAML
"$bin/perf-server" run "$work/soak.yaml" --threads 1 --out "$work/soak.json" > /dev/null &
pid=$!
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$rss" ] && echo "$(( $(date +%s) - start )) $rss" >> "$work/rss"
    sleep 10
done
wait "$pid" || true
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
rows = [tuple(map(int, l.split())) for l in open(f"{w}/rss")]
after = [kb for t, kb in rows if t >= 60]
r = json.load(open(f"{w}/soak.json"))
print(f"requests {r['requests']} rps {r['rps']:.0f} errors {r['errors']} dropped {r['dropped']} p99 {r['latency_ms']['p99']:.2f} ms")
print("RSS MB by time: " + ", ".join(f"{t}s {kb/1024:.1f}" for t, kb in rows))
print(f"after warm-up: min {min(after)/1024:.1f} MB, max {max(after)/1024:.1f} MB, last-first {(after[-1]-after[0])/1024:+.2f} MB")
PY
