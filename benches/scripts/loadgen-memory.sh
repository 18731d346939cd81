#!/usr/bin/env bash
# Memory per virtual user: peak RSS of `perf-server run` with USERS closed-model
# users (10 s think time, each on its own keep-alive connection) minus its peak
# RSS with one user, divided by the extra users. Target: hello_server on 127.0.0.1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
USERS=${USERS:-15000}
ulimit -n 20000
bench_setup perf-server perf-benches
spawn "$bin/hello_server" --listen 127.0.0.1:9101 --threads 1 2>/dev/null
sleep 0.5
for users in 1 "$USERS"; do
    cat > "$work/s$users.yaml" <<YAML
load_tests:
  memory: {target: 'http://127.0.0.1:9101', duration: 40s, users: $users, ramp_up: 15s, think_time: 10s}
YAML
done
idle=$(peak_rss "$work/s1.yaml")
loaded=$(peak_rss "$work/s$USERS.yaml")
python3 - "$work/peak.json" "$idle" "$loaded" "$USERS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); idle, loaded, users = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
peak_users = max(row["users"] for row in r["timeline"])
print(f"users {users} (peak running {peak_users}), requests {r['requests']}, errors {r['errors']} {r['error_kinds']}")
print(f"peak RSS idle {idle/1024:.1f} MB, with users {loaded/1024:.1f} MB: {(loaded-idle)*1024/(users-1):.0f} bytes per user")
PY
