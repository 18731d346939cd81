#!/usr/bin/env bash
# perf-loadgen against h2load (Debian nghttp2-client) over HTTP/2, same run,
# same target: nginx (nginx-light, one worker pinned to core 1) answering
# `200 hello` over TLS with ALPN h2 (the certificates of examples/tls), and
# over h2c. Each client pinned to core 0 with one thread, C connections with
# M streams at once each: h2load -c C -m M; perf-loadgen closed model with
# C×M users, protocol h2, connections C, max_streams_per_connection M.
# Trace headers are off (h2load sends none; with them on, each request's
# unique traceparent costs HPACK work: about 0.8x the throughput below).
# RUNS times each, medians printed. Needs nginx and h2load.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-3}
DUR=${DUR:-10}
C=${C:-4}
M=${M:-32}
bench_setup perf-server
certs=$(pwd)/examples/tls
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  ssl_certificate $certs/server.pem;
  ssl_certificate_key $certs/server.key;
  keepalive_requests 100000000;
  server { listen 127.0.0.1:9445 ssl http2; location / { return 200 "hello"; } }
  server { listen 127.0.0.1:9446 http2; location / { return 200 "hello"; } }
}
CONF
spawn taskset -c 1 nginx -c "$work/nginx.conf" -p "$work"
sleep 1
users=$((C * M))
for kind in tls h2c; do
    if [ "$kind" = tls ]; then url=https://127.0.0.1:9445; else url=http://127.0.0.1:9446; fi
    cat > "$work/$kind.yaml" <<YAML
load_tests:
  h2:
    target: '$url'
    protocol: h2
    connections: $C
    max_streams_per_connection: $M
    duration: ${DUR}s
    users: $users
    trace_headers: false   # h2load sends no per-request trace ids (unique values defeat HPACK)
    tls: {ca_file: '$certs/ca.pem'}
YAML
done
for i in $(seq "$RUNS"); do
    for kind in tls h2c; do
        if [ "$kind" = tls ]; then url=https://127.0.0.1:9445/; else url=http://127.0.0.1:9446/; fi
        taskset -c 0 h2load -t1 -c"$C" -m"$M" -D"$DUR" "$url" > "$work/h2load.out" 2>&1 || true
        taskset -c 0 "$bin/perf-server" run "$work/$kind.yaml" --threads 1 --out "$work/perf.json" > /dev/null || true
        python3 - "$work" "$kind" <<'PY'
import json, re, sys
work, kind = sys.argv[1], sys.argv[2]
out = open(f"{work}/h2load.out").read()
m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
h2 = float(m.group(1)) if m else 0.0
ok = re.search(r"requests: .* (\d+) succeeded, (\d+) failed", out)
r = json.load(open(f"{work}/perf.json"))
print(f"{kind}: h2load {h2:.0f} req/s ({ok.group(0) if ok else 'no summary'}) | perf-loadgen {r['rps']:.0f} req/s "
      f"protocol {r['protocol']} errors {r['errors']} connections {r['phases']['connections_opened']} | ratio {r['rps']/max(h2,1):.3f}")
with open(f"{work}/rows-{kind}", "a") as f:
    f.write(f"{h2} {r['rps']}\n")
PY
    done
done
python3 - "$work" <<'PY'
import statistics, sys
for kind in ["tls", "h2c"]:
    rows = [list(map(float, l.split())) for l in open(f"{sys.argv[1]}/rows-{kind}")]
    print(f"median {kind}: h2load {statistics.median(r[0] for r in rows):.0f} req/s, "
          f"perf-loadgen {statistics.median(r[1] for r in rows):.0f} req/s, "
          f"ratio {statistics.median(r[1]/max(r[0],1) for r in rows):.3f}")
PY
