#!/usr/bin/env bash
# Coordinated omission: the target stalls 500 ms every 5 s. Arrivals at a
# constant rate meet the stall 10 % of the time and wait uniformly 0-500 ms, so
# the true p99 is about 450 ms, the true p95 about 250 ms. perf-loadgen's open
# model (2000 req/s) should report that; closed-loop measurements (wrk -c64 and
# perf-loadgen's closed model with 64 users) show how much they hide.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DUR=${DUR:-30}
ulimit -n 20000
bench_setup perf-server perf-benches
spawn "$bin/hello_server" --listen 127.0.0.1:9102 --threads 1 --stall-every 5s --stall 500ms 2>/dev/null
sleep 0.5
cat > "$work/open.yaml" <<YAML
load_tests:
  open: {target: 'http://127.0.0.1:9102', duration: ${DUR}s, rate: 2000/s, max_in_flight: 4000}
YAML
cat > "$work/closed.yaml" <<YAML
load_tests:
  closed: {target: 'http://127.0.0.1:9102', duration: ${DUR}s, users: 64}
YAML
"$bin/perf-server" run "$work/open.yaml" --out "$work/open.json" > /dev/null
"$bin/perf-server" run "$work/closed.yaml" --out "$work/closed.json" > /dev/null
wrk -t1 -c64 -d"${DUR}s" --latency http://127.0.0.1:9102/ > "$work/wrk.out"
python3 - "$work" <<'PY'
import json, re, sys
w = sys.argv[1]
o = json.load(open(f"{w}/open.json")); c = json.load(open(f"{w}/closed.json"))
wrk = open(f"{w}/wrk.out").read()
def wrk_ms(p):
    m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", wrk)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
true_p99, true_p95 = 450.0, 250.0
l, u = o["latency_ms"], o["latency_uncorrected_ms"]
print(f"open model 2000/s: requests {o['requests']} dropped {o['dropped']} errors {o['errors']}")
print(f"  corrected   p95 {l['p95']:.1f} ms (true ~{true_p95:.0f})  p99 {l['p99']:.1f} ms (true ~{true_p99:.0f}, error {abs(l['p99']-true_p99)/true_p99*100:.1f} %)")
print(f"  uncorrected p95 {u['p95']:.1f} ms  p99 {u['p99']:.1f} ms")
print(f"closed model 64 users: rps {c['rps']:.0f} p95 {c['latency_ms']['p95']:.2f} ms p99 {c['latency_ms']['p99']:.2f} ms")
print(f"wrk -t1 -c64: p90 {wrk_ms(90):.2f} ms p99 {wrk_ms(99):.2f} ms")
PY
