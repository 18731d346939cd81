#!/usr/bin/env bash
# perf-server's request path against a bare actix-web server with the same
# worker count, interleaved in one run: for each endpoint and ROUNDS rounds,
# `wrk -t1 -c64` for DUR seconds against perf-server, then against the bare
# server sending the same bytes (captured from perf-server at start) from a
# handler that does nothing else and no middleware. Prints each round's
# ratio and the median per endpoint (QUICK=1: /health and
# /performance/metrics only).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
command -v wrk > /dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-5}
WORKERS=${WORKERS:-2}
bench_setup perf-server perf-benches
spawn "$bin/hello_server" --listen 127.0.0.1:9111 --threads 1 2>/dev/null
spawn "$bin/perf-server" serve --listen 127.0.0.1:8096 --workers "$WORKERS" --data-dir "$work/data" --log-level warn > "$work/server.log" 2>&1
wait_port 8096
location=$(start_test http://127.0.0.1:8096 '{"name": "seed", "target": "http://127.0.0.1:9111", "duration": "1s", "users": 2}')
sleep 3
paths=(/health /performance/metrics "$location" /metrics)
# QUICK=1: only the two endpoints the aim names.
[ "${QUICK:-0}" = 1 ] && paths=(/health /performance/metrics)
statics=()
for p in "${paths[@]}"; do
    f="$work/body$(echo "$p" | tr '/' '_').json"
    curl -sf "http://127.0.0.1:8096$p" -o "$f"
    statics+=(--static "$p=$f")
done
spawn "$bin/actix_hello" --listen 127.0.0.1:9112 --workers "$WORKERS" "${statics[@]}"
wait_port 9112
rps() { wrk -t1 -c64 -d"${DUR}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
echo "| endpoint | rounds: perf-server / bare req/s (ratio) | median ratio |"
echo "| --- | --- | --- |"
for p in "${paths[@]}"; do
    ratios=(); cells=()
    for r in $(seq "$ROUNDS"); do
        ours=$(rps "http://127.0.0.1:8096$p")
        theirs=$(rps "http://127.0.0.1:9112$p")
        ratio=$(python3 -c "print(f'{$ours / $theirs:.3f}')")
        ratios+=("$ratio")
        cells+=("$(python3 -c "print(f'{$ours:,.0f} / {$theirs:,.0f} ({$ratio})')")")
    done
    name=$p; [[ $p == /performance/tests/* ]] && name="/performance/tests/{id}"
    median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
    echo "| $name | $(IFS=';'; echo "${cells[*]}" | sed 's/;/; /g') | **$median** (range $(printf '%s\n' "${ratios[@]}" | sort -n | head -1)-$(printf '%s\n' "${ratios[@]}" | sort -n | tail -1)) |"
done
