#!/usr/bin/env bash
# 100,000 closed-model users on one machine as SHARDS local shards
# (`perf-server run --shard i/N`), each generator and each hello_server target
# on its own loopback address (a process may hold 20,000 files; one address
# pair offers about 28,000 ephemeral ports). Reports the peak RSS of every
# generator, their sum, and the merged report (`perf-server merge`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
USERS=${USERS:-100000}
SHARDS=${SHARDS:-7}
DUR=${DUR:-60}
ulimit -n 20000
bench_setup perf-server perf-benches
cat > "$work/s.yaml" <<YAML
load_tests:
  many: {duration: ${DUR}s, users: $USERS, ramp_up: 30s, think_time: 10s, timeout: 20s}
YAML
for i in $(seq "$SHARDS"); do
    spawn "$bin/hello_server" --listen "127.0.0.$((i + 1)):9200" --threads 1 2>/dev/null
done
sleep 0.5
gens=()
for i in $(seq "$SHARDS"); do
    "$bin/perf-server" run "$work/s.yaml" --shard "$i/$SHARDS" --threads 1 \
        --target "http://127.0.0.$((i + 1)):9200" --out "$work/shard-$i.json" > /dev/null 2>&1 &
    gens+=($!)
done
declare -A peak
while :; do
    alive=0
    for pid in "${gens[@]}"; do
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        if [ -n "$rss" ]; then
            alive=1
            [ "$rss" -gt "${peak[$pid]:-0}" ] && peak[$pid]=$rss
        fi
    done
    [ "$alive" = 1 ] || break
    sleep 1
done
total=0
for pid in "${gens[@]}"; do total=$((total + ${peak[$pid]:-0})); echo "generator $pid peak RSS $(( ${peak[$pid]:-0} / 1024 )) MB"; done
echo "sum of generator peak RSS: $((total / 1024)) MB for $USERS users ($((total * 1024 / USERS)) bytes per user, runtime and buffers included)"
"$bin/perf-server" merge "$work"/shard-*.json --out "$work/merged.json" || true
python3 - "$work/merged.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"merged: users peak {max(row['users'] for row in r['timeline'])}, requests {r['requests']}, errors {r['errors']} {r['error_kinds']}, rps {r['rps']:.0f}, p99 {r['latency_ms']['p99']:.2f} ms")
PY
