#!/usr/bin/env bash
# Workload-wide index selection against per-statement advice, on a throwaway
# PostgreSQL 15 with hypopg (issue 15). Two workloads:
#   pairs:   `c_i = $1 AND c_j = $2` for every pair of COLUMNS columns of one
#            table (COLUMNS=100 gives 4,950 statements);
#   mixed:   TABLES tables of 20 columns, each with pair lookups, single
#            lookups, ranges and ORDER BY ... LIMIT (several thousand);
#   pgbench: pgbench's TPC-B statements on `pgbench -i -I dtg` (no keys).
# Prints, per workload: statements, indexes (per statement / workload),
# total bytes, saved s/h, plans and planning time of the workload advice.
# Usage: COLUMNS=100 TABLES=5 benches/scripts/index-advice-workload.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
COLUMNS=${COLUMNS:-100}
TABLES=${TABLES:-5}
# The planning is PostgreSQL's: a debug build of perf-server is enough.
if [ -z "${BIN:-}" ]; then cargo build -q -p perf-server; BIN=target/debug/perf-server; fi
PG=/usr/lib/postgresql/15/bin
WORK=$(mktemp -d)
chown postgres "$WORK" 2>/dev/null || true
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups "$@"; else "$@"; fi; }
PORT=$((20000 + RANDOM % 20000))
as_pg "$PG/initdb" -D "$WORK/data" -A trust -U postgres >/dev/null
as_pg "$PG/pg_ctl" -D "$WORK/data" -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1" -l "$WORK/log" -w start >/dev/null
trap 'as_pg "$PG/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1; rm -rf "$WORK"' EXIT
URL="postgres://postgres@127.0.0.1:$PORT/postgres"
psql() { "$PG/psql" -q -X -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

python3 - "$COLUMNS" "$TABLES" "$WORK" <<'PY'
import json, sys
columns, tables, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cols = ", ".join(f"(random() * 999)::int AS c{i}" for i in range(columns))
open(f"{work}/pairs.sql", "w").write(f"CREATE TABLE grid AS SELECT {cols} FROM generate_series(1, 100000); ANALYZE grid;\n")
pairs = [{"query": f"SELECT * FROM grid WHERE c{i} = $1 AND c{j} = $2", "calls": 1000, "total_time_ms": 1000.0}
         for i in range(columns) for j in range(i + 1, columns)]
json.dump(pairs, open(f"{work}/pairs.json", "w"))
sql, mixed = [], []
for t in range(tables):
    c = ", ".join(f"(random() * {10 ** (1 + k % 4)})::int AS c{k}" for k in range(20))
    sql.append(f"CREATE TABLE t{t} AS SELECT g AS id, now() - g * interval '1 s' AS at, {c} FROM generate_series(1, 50000) g; ANALYZE t{t};")
    for i in range(20):
        mixed.append({"query": f"SELECT * FROM t{t} WHERE c{i} = $1", "calls": 500, "total_time_ms": 2500.0})
        mixed.append({"query": f"SELECT * FROM t{t} WHERE c{i} = $1 AND at > $2", "calls": 200, "total_time_ms": 1000.0})
        mixed.append({"query": f"SELECT id FROM t{t} WHERE c{i} = $1 ORDER BY at DESC LIMIT 10", "calls": 300, "total_time_ms": 1500.0})
        for j in range(i + 1, 20):
            mixed.append({"query": f"SELECT * FROM t{t} WHERE c{i} = $1 AND c{j} = $2", "calls": 100, "total_time_ms": 500.0})
open(f"{work}/mixed.sql", "w").write("\n".join(sql) + "\n")
json.dump(mixed, open(f"{work}/mixed.json", "w"))
tpcb = [
    ("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", 360000, 120000.0),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = $1", 360000, 90000.0),
    ("UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2", 360000, 20000.0),
    ("UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2", 360000, 20000.0),
    ("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)", 360000, 15000.0),
]
json.dump([{"query": q, "calls": c, "total_time_ms": t} for q, c, t in tpcb], open(f"{work}/pgbench.json", "w"))
PY
psql -f "$WORK/pairs.sql"
psql -f "$WORK/mixed.sql"
"$PG/pgbench" -i -I dtg -s 10 -q -h 127.0.0.1 -p "$PORT" -U postgres postgres 2>/dev/null
psql -c "ANALYZE"
# The bulk loads are not the workload: their inserts would count as writes every index pays for.
psql -c "SELECT pg_stat_reset()"

summary() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
name, per, whole = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
print(f"{name}: {whole['statements']} statements; per-statement advice {len(per['indexes'])} indexes; "
      f"workload {len(whole['indexes'])} indexes, {whole['total_bytes'] / 2**20:.1f} MiB, "
      f"saves {whole['saved_ms_per_hour'] / 1e3:.0f} s/h over {whole['statements_served']} statements "
      f"(write penalty {whole['write_penalty_ms_per_hour'] / 1e3:.1f} s/h), {len(whole['rejected'])} rejected; "
      f"{whole['plans']} plans in {whole['elapsed_ms'] / 1e3:.1f} s")
PY
}
for w in pairs mixed pgbench; do
    start=$(date +%s.%N)
    "$BIN" db advise --database-url "$URL" --statements "$WORK/$w.json" --per-statement --json > "$WORK/$w.per.json"
    per_s=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    "$BIN" db advise --database-url "$URL" --statements "$WORK/$w.json" --json > "$WORK/$w.whole.json"
    summary "$w" "$WORK/$w.per.json" "$WORK/$w.whole.json"
    echo "$w: per-statement advice took ${per_s} s"
done
