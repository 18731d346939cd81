#!/usr/bin/env bash
# What `panic = "unwind"` costs perf-server against `panic = "abort"`: the
# same commit built both ways, both servers up at once, wrk (-t1 -c64, 10 s)
# interleaved on /health and /performance/metrics for ROUNDS rounds (default
# 3); prints the median req/s of each build and their ratio per endpoint.
#   bash benches/scripts/panic-policy.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk > /dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
rounds=${ROUNDS:-3}
cargo build --release -q -p perf-server
CARGO_PROFILE_RELEASE_PANIC=abort cargo build --release -q -p perf-server --target-dir target/panic-abort
work=$(mktemp -d)
target/release/perf-server serve --listen 127.0.0.1:8201 --data-dir "$work/unwind" --log-level warn --workers 1 &
unwind=$!
target/panic-abort/release/perf-server serve --listen 127.0.0.1:8202 --data-dir "$work/abort" --log-level warn --workers 1 &
abort=$!
trap 'kill $unwind $abort 2>/dev/null; rm -rf "$work"' EXIT
for port in 8201 8202; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 0.1; done
done
echo "| endpoint | unwind req/s (median of $rounds) | abort req/s | unwind / abort |"
echo "| --- | --- | --- | --- |"
for path in /health /performance/metrics; do
  u=(); a=()
  for _ in $(seq "$rounds"); do
    u+=("$(wrk -t1 -c64 -d10s "http://127.0.0.1:8201$path" | awk '/Requests\/sec/ {print $2}')")
    a+=("$(wrk -t1 -c64 -d10s "http://127.0.0.1:8202$path" | awk '/Requests\/sec/ {print $2}')")
  done
  python3 - "$path" "${u[*]}" "${a[*]}" <<'PY'
import statistics, sys
path, u, a = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
mu, ma = statistics.median(u), statistics.median(a)
print(f"| {path} | {mu:,.0f} ({', '.join(f'{x:,.0f}' for x in u)}) | {ma:,.0f} ({', '.join(f'{x:,.0f}' for x in a)}) | {mu / ma:.3f} |")
PY
done
