#!/usr/bin/env bash
# The whole test suite. As root it first installs what the tests need from
# Debian (PostgreSQL 15 server, hypopg); otherwise it says what is missing.
# Then (the console's page tests in a headless Chromium among the tests):
# the alert rules (promtool) and dashboard, cargo fmt --check,
# cargo clippy -D warnings, cargo test --workspace (with a few seconds of
# fuzzing per target), the OpenAPI document (openapi-spec-validator from
# PyPI), the load-testing CI job (with promtool check metrics on a live
# scrape), a short mixed soak.
set -euo pipefail
cd "$(dirname "$0")/.."
# A clean build gains nothing from incremental state and it doubles the disk
# the build needs (the linker dies of SIGBUS when the disk fills).
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
df -h . | tail -1 | awk '{print "==> disk: " $4 " free of " $2}'

pg_bin=${PERF_PG_BIN:-/usr/lib/postgresql/15/bin}
missing=()
[ -x "$pg_bin/postgres" ] && [ -x "$pg_bin/initdb" ] || missing+=(postgresql-15)
[ -f /usr/share/postgresql/15/extension/hypopg.control ] || missing+=(postgresql-15-hypopg)
command -v promtool >/dev/null || missing+=(prometheus)          # promtool checks the alert rules
command -v python3 >/dev/null || missing+=(python3)              # the scaling tests run python's http.server as instances
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)   # openapi-spec-validator (PyPI) in a venv
command -v curl >/dev/null || missing+=(curl)                    # the CI load job and the soak speak to perf-server
command -v chromium >/dev/null || missing+=(chromium)            # the console's page tests run a real headless Chromium
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)       # ...driven over WebDriver
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "==> missing ${missing[*]}: install them (Debian: apt-get install ${missing[*]}) or run this script as root" >&2
        echo "    tests that need PostgreSQL will fail with the same advice" >&2
    fi
fi

echo "==> monitoring files (deploy/prometheus, deploy/grafana)"
promtool check rules deploy/prometheus/alerts.yaml
for dashboard in deploy/grafana/*.json; do
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["panels"], "no panels"; assert all(p["fieldConfig"]["defaults"].get("unit") for p in d["panels"]), "a panel without a unit"' "$dashboard"
done
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo test"
cargo test --workspace
echo "==> OpenAPI document (openapi-spec-validator)"
# The validator from PyPI (Debian has no package of it), into a venv of its own.
validator=${OPENAPI_SPEC_VALIDATOR:-}
if [ -z "$validator" ]; then
    if command -v openapi-spec-validator >/dev/null; then
        validator=openapi-spec-validator
    else
        validator=target/openapi-venv/bin/openapi-spec-validator
        if [ ! -x "$validator" ]; then
            python3 -m venv target/openapi-venv
            target/openapi-venv/bin/pip install -q 'openapi-spec-validator==0.9.0'
        fi
    fi
fi
target/debug/perf-server openapi > target/openapi.json
"$validator" target/openapi.json
echo "==> load-testing CI job (docs/load-testing.md)"
bash scripts/ci-load-smoke.sh
# The mixed soak, short, on the debug binary: nothing lost across a PostgreSQL
# and a perf-server restart; RSS bounds are loose here (a debug binary's first
# CPU profile loads its debug info: ~250 MiB), the release figures are in
# BENCHMARKS.md (benches/scripts/soak-mixed.sh, 30 minutes).
echo "==> mixed soak (90 s)"
SOAK_SECONDS=90 PERF_BIN=target/debug/perf-server RSS_BOUND_MIB=700 RSS_GROWTH_MIB=150 PEAK_BOUND_MIB=900 \
    bash benches/scripts/soak-mixed.sh
