#!/usr/bin/env bash
# Long fuzz runs: every fuzz target for DURATION seconds each (default 300).
#   bash scripts/fuzz.sh 1800          # half an hour per target
#   FUZZ_SEED=1234 bash scripts/fuzz.sh 10   # replay from a seed a failure printed
# Targets: scenarios (JSON and YAML → validation → plan → short runs), the
# response reader against hostile servers, every API body through the app,
# SQL through fingerprint and analysis. CI runs the same tests for seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_SECONDS=${1:-300}
# PROFILE=dev reuses the debug test build (slower per input, no release build).
profile=(--profile "${PROFILE:-release}")
echo "==> fuzzing each target for ${FUZZ_SECONDS}s (${PROFILE:-release})"
for target in "-p perf-loadgen --test fuzz" "-p perf-server --test fuzz" "-p perf-db --test fuzz"; do
    # shellcheck disable=SC2086
    cargo test "${profile[@]}" $target -- --nocapture --test-threads 1 2>&1 | grep -E '^fuzz |^  |panicked|seed|test result'
done
