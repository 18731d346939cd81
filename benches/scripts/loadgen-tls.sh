#!/usr/bin/env bash
# perf-loadgen against wrk over TLS, same run, same target: nginx (Debian
# nginx-light, one worker pinned to core 1) serving `200 hello` over TLS with
# the test certificates of examples/tls; each client pinned to core 0 with one
# thread. Three figures, RUNS times each (medians printed):
#   keepalive  64 keep-alive connections (wrk -t1 -c64)
#   busypoll   the same, perf-loadgen run with --busy-poll 20us (it spins
#              20 µs before its thread sleeps, so nginx's answers need not
#              wake it: see perf-loadgen's busy_poll module)
#   bound      the same, each client limited to half a core (a cgroup CPU
#              quota of 50 ms per 100 ms, v2 cpu.max or v1 cfs_quota_us): the
#              client, not nginx, is then the bottleneck, so the rate is the
#              client's own throughput per CPU (needs root; skipped without)
#   handshake  a new connection and a FULL handshake per request: the nginx
#              port closes after each response (keepalive_requests 1) and has
#              no session cache or tickets; perf-loadgen also sets
#              session_resumption: false
#   memory     bytes per TLS user: peak RSS at USERS users (10 s think time)
#              minus peak RSS at 1 user, over the extra users
# Both send the same request bytes: perf-loadgen's trace headers are off
# (TRACE=true turns them on) and wrk is given perf-loadgen's User-Agent (nginx
# scans that header for browser names: without it wrk's requests are cheaper
# for the target). The one nginx worker is the bottleneck of the keep-alive
# figure: both clients keep its core busy, so the CPU each client spends per
# request (user + system, from /usr/bin/time) is printed beside the rates.
# Needs nginx, wrk and GNU time (apt-get install nginx-light wrk time). DUR
# seconds per run.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-3}
DUR=${DUR:-10}
USERS=${USERS:-15000}
ulimit -n 20000
bench_setup perf-server
certs=$(pwd)/examples/tls
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $work/nginx.pid;
error_log $work/error.log;
daemon off;
events { worker_connections 19000; }
http {
  access_log off;
  ssl_certificate $certs/server.pem;
  ssl_certificate_key $certs/server.key;
  ssl_protocols TLSv1.2 TLSv1.3;
  server {
    listen 127.0.0.1:9443 ssl;
    keepalive_requests 100000000;
    ssl_session_cache shared:S:10m;
    location / { return 200 "hello"; }
  }
  server {
    listen 127.0.0.1:9444 ssl;
    keepalive_requests 1;
    ssl_session_cache off;
    ssl_session_tickets off;
    location / { return 200 "hello"; }
  }
}
CONF
spawn taskset -c 1 nginx -c "$work/nginx.conf" -p "$work"
sleep 1
scenario() { # port users think resumption -> file
    cat > "$work/s-$1-$2.yaml" <<YAML
load_tests:
  tls:
    target: 'https://127.0.0.1:$1'
    duration: ${5:-${DUR}s}
    users: $2
    ${3:+think_time: $3}
    ${6:+ramp_up: $6}
    trace_headers: ${TRACE:-false}   # wrk sends no per-request ids: same request bytes
    tls: {ca_file: '$certs/ca.pem', session_resumption: $4}
YAML
    echo "$work/s-$1-$2.yaml"
}
keep=$(scenario 9443 64 "" true)
full=$(scenario 9444 64 "" false)
# A cgroup with a CPU quota of half a core, for the client-bound figure.
# The EXIT trap removes it whether or not it was set up completely.
quota="" made=""
drop_quota() {
    [ -n "$made" ] || return 0
    for _ in 1 2 3 4 5; do rmdir "$made" 2>/dev/null && return 0; sleep 0.2; done
    echo "could not remove the cgroup $made" >&2
}
trap 'bench_cleanup; drop_quota' EXIT
if [ -w /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
    made=/sys/fs/cgroup/loadgen-tls-$$
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    mkdir "$made" && echo "50000 100000" > "$made/cpu.max" 2>/dev/null && quota=$made
elif [ -w /sys/fs/cgroup/cpu ]; then
    made=/sys/fs/cgroup/cpu/loadgen-tls-$$
    mkdir "$made" && echo 100000 > "$made/cpu.cfs_period_us" && echo 50000 > "$made/cpu.cfs_quota_us" && quota=$made
fi
# `in_quota CMD...` runs CMD inside the quota cgroup when the kind is
# "bound"; a client that cannot join it does not run at all.
in_quota() {
    if [ "$kind" = bound ]; then
        sh -c 'echo $$ > "$0/cgroup.procs" || exit 1; exec "$@"' "$quota" "$@"
    else "$@"; fi
}
kinds="keepalive busypoll handshake"
if [ -n "$quota" ]; then kinds="keepalive busypoll bound handshake"; else echo "no writable cgroup: the client-bound figure is skipped"; fi
client_wrk() { # port
    in_quota taskset -c 0 /usr/bin/time -f "%U %S" -o "$work/wrk.time" \
        wrk -t1 -c64 -H "User-Agent: perf-loadgen" -d"${DUR}s" "https://127.0.0.1:$1/" > "$work/wrk.out"
}
client_perf() { # scenario file
    in_quota taskset -c 0 /usr/bin/time -f "%U %S" -o "$work/perf.time" \
        "$bin/perf-server" run "$1" --threads 1 --out "$work/perf.json" \
        ${BUSY:+--busy-poll "$BUSY"} > /dev/null || true
}
for i in $(seq "$RUNS"); do
    for kind in $kinds; do
        port=9443; file=$keep
        [ "$kind" = handshake ] && port=9444 && file=$full
        BUSY=""; [ "$kind" = busypoll ] && BUSY=20us
        # Alternate who goes first: a run that always follows the other
        # inherits its warm (or tired) target.
        rm -f "$work"/wrk.out "$work"/wrk.time "$work"/perf.json "$work"/perf.time
        if [ $((i % 2)) = 1 ]; then client_wrk $port; client_perf "$file"
        else client_perf "$file"; client_wrk $port; fi
        python3 - "$work" "$kind" <<'PY2'
import json, re, sys
work, kind = sys.argv[1], sys.argv[2]
wrk = open(f"{work}/wrk.out").read()
wrk_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1))
wrk_req = int(re.search(r"(\d+) requests in", wrk).group(1))
r = json.load(open(f"{work}/perf.json"))
p = r["phases"]
cpu = lambda f, n: sum(map(float, open(f).read().split()[-2:])) / max(n, 1) * 1e6
wc, pc = cpu(f"{work}/wrk.time", wrk_req), cpu(f"{work}/perf.time", r["requests"])
print(f"{kind}: wrk {wrk_rps:.0f} req/s {wc:.2f} us-cpu/req | perf-loadgen {r['rps']:.0f} req/s {pc:.2f} us-cpu/req "
      f"errors {r['errors']} handshakes {p['tls_handshakes']} resumed {p['tls_resumed']} | ratio {r['rps']/wrk_rps:.3f}")
with open(f"{work}/rows-{kind}", "a") as f:
    f.write(f"{wrk_rps} {r['rps']} {wc} {pc}\n")
PY2
    done
done
python3 - "$work" $kinds <<'PY2'
import statistics, sys
for kind in sys.argv[2:]:
    rows = [list(map(float, l.split())) for l in open(f"{sys.argv[1]}/rows-{kind}")]
    med = lambda k: statistics.median(r[k] for r in rows)
    ratios = sorted(r[1] / r[0] for r in rows)
    print(f"median {kind}: wrk {med(0):.0f} req/s, perf-loadgen {med(1):.0f} req/s, ratio {statistics.median(ratios):.3f} "
          f"({ratios[0]:.3f}-{ratios[-1]:.3f}); cpu/request wrk {med(2):.2f} us, perf-loadgen {med(3):.2f} us")
PY2
idle=$(peak_rss "$(scenario 9443 1 10s true 40s 15s)")
loaded=$(peak_rss "$(scenario 9443 "$USERS" 10s true 40s 15s)")
python3 - "$work/peak.json" "$idle" "$loaded" "$USERS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); idle, loaded, users = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
peak_users = max(row["users"] for row in r["timeline"])
print(f"memory: users {users} (peak running {peak_users}), requests {r['requests']}, errors {r['errors']} {r['error_kinds']}, "
      f"TLS handshakes {r['phases']['tls_handshakes']}")
print(f"memory: peak RSS idle {idle/1024:.1f} MB, with users {loaded/1024:.1f} MB: {(loaded-idle)*1024/(users-1):.0f} bytes per TLS user")
PY
