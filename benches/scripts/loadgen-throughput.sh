#!/usr/bin/env bash
# perf-loadgen against wrk in the same run: closed model, 64 keep-alive
# connections, no think time, the generator pinned to core 0 with one worker
# thread, the minimal target (hello_server, one thread) pinned to core 1.
# Prints one line per run and the medians; RUNS and DUR (seconds) adjust it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-3}
DUR=${DUR:-10}
bench_setup perf-server perf-benches
spawn taskset -c 1 "$bin/hello_server" --listen 127.0.0.1:9100 --threads 1 2>/dev/null
sleep 0.5
cat > "$work/s.yaml" <<YAML
load_tests:
  throughput: {target: 'http://127.0.0.1:9100', duration: ${DUR}s, users: 64}
YAML
for i in $(seq "$RUNS"); do
    taskset -c 0 /usr/bin/time -f "%U %S %M" -o "$work/wrk.time" \
        wrk -t1 -c64 -d"${DUR}s" http://127.0.0.1:9100/ > "$work/wrk.out"
    taskset -c 0 /usr/bin/time -f "%U %S %M" -o "$work/perf.time" \
        "$bin/perf-server" run "$work/s.yaml" --threads 1 --out "$work/perf-$i.json" > /dev/null
    python3 - "$work" "$i" <<'PY'
import json, re, sys
work, i = sys.argv[1], sys.argv[2]
wrk = open(f"{work}/wrk.out").read()
wrk_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
wrk_req = int(re.search(r"(\d+) requests in", wrk).group(1))
wu, ws, wm = open(f"{work}/wrk.time").read().split()[-3:]
r = json.load(open(f"{work}/perf-{i}.json"))
pu, ps, pm = open(f"{work}/perf.time").read().split()[-3:]
cpu = lambda u, s, n: (float(u) + float(s)) / n * 1e6
print(f"run {i}: wrk {wrk_rps:.0f} req/s {cpu(wu, ws, wrk_req):.2f} us-cpu/req {int(wm)//1024} MB | "
      f"perf-loadgen {r['rps']:.0f} req/s {cpu(pu, ps, r['requests']):.2f} us-cpu/req {int(pm)//1024} MB "
      f"errors {r['errors']} | ratio {r['rps']/wrk_rps:.3f}")
with open(f"{work}/rows", "a") as f:
    f.write(f"{wrk_rps} {r['rps']} {cpu(wu, ws, wrk_req)} {cpu(pu, ps, r['requests'])} {wm} {pm}\n")
PY
done
python3 - "$work" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(f"{sys.argv[1]}/rows")]
med = [statistics.median(c) for c in zip(*rows)]
print(f"median: wrk {med[0]:.0f} req/s, perf-loadgen {med[1]:.0f} req/s, ratio {statistics.median(r[1]/r[0] for r in rows):.3f}; "
      f"cpu/request wrk {med[2]:.2f} us, perf-loadgen {med[3]:.2f} us; max RSS wrk {med[4]/1024:.1f} MB, perf-loadgen {med[5]/1024:.1f} MB")
PY
