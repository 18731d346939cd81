#!/usr/bin/env bash
# Memory per virtual user: peak RSS of `perf-server run` with USERS closed-model
# users (10 s think time, each on its own keep-alive connection) minus its peak
# RSS with one user, divided by the extra users. Target: hello_server on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
USERS=${USERS:-15000}
ulimit -n 20000
cargo build --release -q -p perf-server -p perf-benches --bins
bin=target/release
work=$(mktemp -d)
"$bin/hello_server" --listen 127.0.0.1:9101 --threads 1 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
sleep 0.5
peak_rss() { # scenario file -> peak VmRSS in kB while it runs
    "$bin/perf-server" run "$1" --threads 1 --out "$work/out.json" > /dev/null &
    local pid=$! peak=0 rss
    while kill -0 "$pid" 2>/dev/null; do
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ -n "$rss" ] && [ "$rss" -gt "$peak" ] && peak=$rss
        sleep 0.2
    done
    wait "$pid" || true
    echo "$peak"
}
for users in 1 "$USERS"; do
    cat > "$work/s$users.yaml" <<YAML
load_tests:
  memory: {target: 'http://127.0.0.1:9101', duration: 40s, users: $users, ramp_up: 15s, think_time: 10s}
YAML
done
idle=$(peak_rss "$work/s1.yaml")
loaded=$(peak_rss "$work/s$USERS.yaml")
python3 - "$work/out.json" "$idle" "$loaded" "$USERS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); idle, loaded, users = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
peak_users = max(row["users"] for row in r["timeline"])
print(f"users {users} (peak running {peak_users}), requests {r['requests']}, errors {r['errors']} {r['error_kinds']}")
print(f"peak RSS idle {idle/1024:.1f} MB, with users {loaded/1024:.1f} MB: {(loaded-idle)*1024/(users-1):.0f} bytes per user")
PY
