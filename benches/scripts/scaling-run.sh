#!/usr/bin/env bash
# A real scale-up: perf-server (release) runs an autoscaler over local
# perf-server instances, scaling on the request rate of a load test it runs
# itself (open model ramping 200 -> 4000 req/s over 60 s against
# hello_server, then 30 s at 4000). Target: 1000 req/s per replica, decisions
# every 2 s, scale-down window 30 s (shortened for the run). Prints, for each
# step up, the seconds from the rate crossing the target of the replicas then
# ready to enough instances being ready, and the scale-down after the load.
# Then scales to 100 instances by hand and reports the time until all are
# healthy and their total RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p perf-server -p perf-benches --bins
bin=$PWD/target/release
work=$(mktemp -d)
"$bin/hello_server" --listen 127.0.0.1:9107 --threads 1 2>/dev/null &
target=$!
cat > "$work/perf.yaml" <<YAML
scaling:
  period_s: 2
  policy:
    min_replicas: 1
    max_replicas: 120
    metrics: [{name: rps, kind: external, target: {average_value: 1000}}]
    behavior:
      scale_down: {stabilization_window_seconds: 30}
  manager:
    local:
      command: [$bin/perf-server, serve, --listen, "127.0.0.1:{port}", --data-dir, "$work/instances/{index}", --workers, "1", --sample-interval, "5s"]
      base_port: 9300
      health_path: /ready
      health_interval_s: 0.25
      drain_timeout_s: 5
  source:
    load_test: {metric: rps}
YAML
"$bin/perf-server" serve --listen 127.0.0.1:8094 --data-dir "$work/data" --config "$work/perf.yaml" > "$work/server.log" 2>&1 &
server=$!
trap 'kill $target $server 2>/dev/null; sleep 6; pkill -f "$work/instances" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8094) 2>/dev/null && break; sleep 0.1; done
python3 -u - "$work" <<'PY'
import json, sys, time, urllib.request, subprocess
base = "http://127.0.0.1:8094"
def get(path):
    return json.load(urllib.request.urlopen(base + path, timeout=10))
def send(method, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
                                 headers={"content-type": "application/json"})
    return urllib.request.urlopen(req, timeout=120)
def ready_count():
    s = get("/performance/scaling/status")
    return sum(1 for i in s.get("instances", []) if i["ready"]), s["current_replicas"]
while ready_count()[0] < 1:
    time.sleep(0.2)
resp = send("POST", "/performance/tests", {
    "name": "ramp", "target": "http://127.0.0.1:9107", "max_in_flight": 4000,
    "stages": [{"duration": "5s", "rate": "200/s"}, {"duration": "60s", "rate": "4000/s"},
               {"duration": "30s", "rate": "4000/s"}]})
location = resp.headers["Location"]
t0 = time.time()
crossings = {}   # replicas needed -> time the rate first needed them
ready_at = {}
samples = []
while True:
    t = get(location)
    rps = (t.get("progress") or {}).get("rps", 0.0)
    ready, current = ready_count()
    now = time.time() - t0
    samples.append((now, rps, ready, current))
    needed = max(1, int(-(-rps // 1100)))   # above target x (1 + tolerance)
    for n in range(2, needed + 1):
        crossings.setdefault(n, now)
    for n in list(crossings):
        if ready >= n and n not in ready_at:
            ready_at[n] = now
    if t["status"] not in ("queued", "running"):
        break
    time.sleep(0.25)
waits = [ready_at[n] - crossings[n] for n in sorted(crossings) if n in ready_at]
print(f"scale-up steps: {len(waits)}; seconds from crossing to ready: "
      f"median {sorted(waits)[len(waits)//2]:.1f}, max {max(waits):.1f}" if waits else "no scale-up seen")
peak = max(s[3] for s in samples)
print(f"peak replicas {peak}; load test ended at {samples[-1][0]:.0f} s with {samples[-1][1]:.0f} req/s")
t_end = time.time()
while True:
    ready, current = ready_count()
    if current <= 1:
        print(f"scaled down to {current} {time.time() - t_end:.0f} s after the load stopped (window 30 s)")
        break
    if time.time() - t_end > 120:
        print(f"still {current} replicas 120 s after the load stopped")
        break
    time.sleep(1)
# 100 instances: raise the policy's minimum (a manual scale would be undone
# by the next decision, as with an HPA).
start = time.time()
policy = get("/performance/scaling/status")["policy"]
policy["min_replicas"] = 100
send("PUT", "/performance/scaling/config", policy)
while True:
    ready, current = ready_count()
    if ready >= 100:
        break
    if time.time() - start > 180:
        print(f"only {ready} of 100 ready after 180 s")
        break
    time.sleep(0.5)
took = time.time() - start
pids = [i["pid"] for i in get("/performance/scaling/status")["instances"] if i.get("pid")]
rss = 0
for pid in pids:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss += int(line.split()[1])
print(f"100 instances: {ready} ready {took:.1f} s after the request; total RSS {rss/1024:.0f} MiB ({rss/1024/max(len(pids),1):.1f} MiB each)")
hist = get("/performance/scaling/history?limit=500")["items"]
ups = [e for e in hist if e["kind"] == "auto" and e["to"] > e["from"]]
print(f"history: {len(hist)} decisions stored, {len(ups)} automatic scale-ups")
policy["min_replicas"] = 1
send("PUT", "/performance/scaling/config", policy)
PY
