#!/usr/bin/env bash
# A mixed soak of perf-server on a PostgreSQL store: load tests started (some
# cancelled), CPU profiles taken, snapshots written, scrapes, a PostgreSQL
# restart and a perf-server restart (SIGTERM) every third of the run, with
# retention keeping profiles and snapshots bounded (tests are all kept, to
# count them). At the end: every test submitted is in
# a terminal state (nothing lost or left running), RSS and store size within
# the stated bounds.
#   bash benches/scripts/soak-mixed.sh            # 30 minutes, release build
#   SOAK_SECONDS=90 PERF_BIN=target/debug/perf-server bash benches/scripts/soak-mixed.sh   # CI
# Bounds: the RSS floor at the end (lowest of the last 10 samples, one every
# 10 s) within RSS_BOUND_MIB (default 160) and at most RSS_GROWTH_MIB
# (default 48) above the floor of the first 10 (growth that stays is a leak);
# the peak under PEAK_BOUND_MIB (default 480, under the 512 MiB budget): each
# CPU profile's symbolization holds ~280 MiB for a second or two, so back-to-
# back profiles keep RSS near the peak much of the time; store under
# STORE_BOUND_MIB (default 256).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${SOAK_SECONDS:-1800}
rss_bound=${RSS_BOUND_MIB:-160}
rss_growth=${RSS_GROWTH_MIB:-48}
store_bound=${STORE_BOUND_MIB:-256}
peak_bound=${PEAK_BOUND_MIB:-480}
pg_bin=${PERF_PG_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL 15 server not found: apt-get install -y postgresql-15" >&2; exit 2; }
if [ -z "${PERF_BIN:-}" ]; then
  cargo build --release -q -p perf-server
  PERF_BIN=$PWD/target/release/perf-server
fi
work=$(mktemp -d)
chmod 755 "$work"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups)
  chown postgres:postgres "$work"
fi
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$pg_bin/initdb" -A trust -U postgres -D "$work/pg" > /dev/null
pg() { "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $work" -w "$@" > /dev/null; }
pg start
url="postgresql://postgres@127.0.0.1:$pg_port/postgres"
cat > "$work/perf.yaml" <<YAML
listen: 127.0.0.1:$api_port
database_url: $url
log_level: warn
max_concurrent_tests: 2
max_queued_tests: 4
retention:
  tests: {max_count: 100000, max_age: 1d}
  profiles: {max_count: 20, max_age: 1h}
  snapshots: {max_count: 200, max_age: 1h}
YAML
server=""
start_server() {
  "$PERF_BIN" serve --config "$work/perf.yaml" --data-dir "$work/data" >> "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$api_port/health" > /dev/null && return; sleep 0.1; done
  echo "perf-server did not start" >&2; tail -20 "$work/server.log" >&2; exit 1
}
cleanup() {
  local rc=$?
  [ -n "$server" ] && kill "$server" 2>/dev/null
  pg stop -m immediate 2>/dev/null || true
  if [ "$rc" != 0 ]; then echo "perf-server log (last 30 lines):" >&2; tail -30 "$work/server.log" >&2 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
start_server
api=http://127.0.0.1:$api_port
json() { curl -s -XPOST "$api$1" -H 'content-type: application/json' -d "$2"; }
submitted=0; refused=0; cancelled=0; profiles=0; snapshots=0; scrapes=0
rss_csv=$work/rss.csv; echo "t_s,rss_mib" > "$rss_csv"
start=$(date +%s); next_sample=0; restarts=0; ids=$work/ids
: > "$ids"
third=$(( secs / 3 ))
while [ $(( $(date +%s) - start )) -lt "$secs" ]; do
  t=$(( $(date +%s) - start ))
  answer=$(json /performance/tests "{\"name\": \"soak\", \"target\": \"$api\", \"duration\": \"3s\", \"users\": 4, \"requests\": [{\"path\": \"/health\"}]}")
  id=$(echo "$answer" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("id",""))' 2>/dev/null || true)
  if [ -n "$id" ]; then
    submitted=$((submitted + 1)); echo "$id" >> "$ids"
    if [ $(( submitted % 4 )) = 0 ]; then sleep 0.5; curl -s -XDELETE "$api/performance/tests/$id" > /dev/null; cancelled=$((cancelled + 1)); fi
  else
    refused=$((refused + 1))
  fi
  p=$(json /performance/profiling/start '{"kind": "cpu", "duration_s": 1}')
  pid=$(echo "$p" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("id",""))' 2>/dev/null || true)
  [ -n "$pid" ] && profiles=$((profiles + 1))
  json /performance/metrics/snapshots "{\"label\": \"soak $t\"}" > /dev/null && snapshots=$((snapshots + 1))
  curl -s "$api/metrics" > /dev/null; curl -s "$api/performance/metrics" > /dev/null; scrapes=$((scrapes + 2))
  sleep 1.2
  if [ "$t" -ge "$next_sample" ]; then
    echo "$t,$(( $(awk '/VmRSS/ {print $2}' /proc/$server/status) / 1024 ))" >> "$rss_csv"
    next_sample=$(( t + 10 ))
  fi
  if [ "$third" -gt 0 ] && [ "$t" -ge $(( third * (restarts + 1) )) ] && [ "$restarts" -lt 2 ]; then
    restarts=$((restarts + 1))
    if [ "$restarts" = 1 ]; then
      echo "  t=${t}s: PostgreSQL restart"; pg stop -m fast; sleep 3; pg start
    else
      echo "  t=${t}s: perf-server restart (SIGTERM)"; kill -TERM "$server"; wait "$server" || true; start_server
    fi
  fi
done
# A test's status; a server that does not answer is retried, then said.
status_of() {
  local s
  for _ in 1 2 3 4 5; do
    s=$(curl -s --max-time 10 "$api/performance/tests/$1" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status","gone"))' 2>/dev/null) \
      && [ -n "$s" ] && { echo "$s"; return; }
    sleep 1
  done
  echo "unanswered"
}
# Let the last tests end, then check every one is terminal.
sleep 8
left=0; terminal=0
while read -r id; do
  s=$(status_of "$id")
  case "$s" in completed|cancelled|failed|interrupted) terminal=$((terminal + 1));; *) left=$((left + 1)); echo "  test $id is $s" >&2;; esac
done < "$ids"
read -r rss_first rss_end rss_max < <(python3 - "$rss_csv" <<'PY'
import sys
rows = [int(line.split(",")[1]) for line in open(sys.argv[1]).read().split()[1:]]
first, last = rows[:10], rows[-10:]
print(min(first), min(last), max(rows))
PY
)
store_mib=$("${as_pg[@]}" psql -h 127.0.0.1 -p "$pg_port" -U postgres -Atc "SELECT pg_database_size('postgres') / 1048576" postgres)
echo "soak ${secs}s: $submitted tests submitted ($cancelled cancelled, $refused refused with 429/503), $terminal terminal, $left not terminal"
echo "  $profiles profiles, $snapshots snapshots, $scrapes scrapes, $restarts restarts"
echo "  RSS MiB (floor = lowest of 10 samples): first $rss_first, last $rss_end; peak $rss_max (bounds: last <= $rss_bound, growth <= $rss_growth, peak <= $peak_bound)"
echo "  store: $store_mib MiB (bound $store_bound)"
echo "  RSS series (t_s,MiB): $(tail -n +2 "$rss_csv" | tr '\n' ' ')"
fail=0
[ "$left" = 0 ] || { echo "FAIL: $left tests not terminal" >&2; fail=1; }
[ "$rss_end" -le "$rss_bound" ] || { echo "FAIL: RSS $rss_end MiB over $rss_bound" >&2; fail=1; }
[ $(( rss_end - rss_first )) -le "$rss_growth" ] || { echo "FAIL: RSS grew $(( rss_end - rss_first )) MiB" >&2; fail=1; }
[ "$rss_max" -le "$peak_bound" ] || { echo "FAIL: RSS peak $rss_max MiB over $peak_bound" >&2; fail=1; }
[ "$store_mib" -le "$store_bound" ] || { echo "FAIL: store $store_mib MiB" >&2; fail=1; }
exit $fail
