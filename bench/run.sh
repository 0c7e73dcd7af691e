#!/usr/bin/env bash
# The consumer benchmark, in one command.
#
#   bench/run.sh            the full run (~7 min on 2 cores, plus the first release build)
#   bench/run.sh --smoke    20,000 messages, 1 round, no callgrind, no aiokafka: checks that
#                           the benchmark still works; asserts no speed
#   bench/run.sh [--smoke] [kafka-bench run options...]   e.g. --rounds 3
#
# It builds kafka-bench in release mode, starts its own Tansu broker on a free loopback
# port (unless KAFKA_BROKERS is set), installs aiokafka (pinned) into a venv under
# target/, runs everything and stops the broker whatever happens.
#
# Output: the table on stdout; bench/results/latest.json and bench/results/throughput.png
# (a smoke run writes smoke.json and smoke-throughput.png, a run with --only partial.json and
# partial-throughput.png instead, so neither ever replaces the results of a full run).
#
# Environment:
#   KAFKA_BROKERS  use this broker instead of starting Tansu
#   TANSU          a tansu binary to use instead of .tools/tansu/tansu
#   BENCH_FONT     a .ttf for the PNG's text (default: DejaVu Sans, installed if missing)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

AIOKAFKA_VERSION="0.14.0"                 # pinned: the Python client guillotina_kafka used
VENV="$REPO/target/bench-venv"
LOG_DIR="$REPO/target/bench"
FONT_DEFAULT="/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

SMOKE=0
for arg in "$@"; do
    [[ "$arg" == "--smoke" ]] && SMOKE=1
done

# The broker's install, start and stop, shared with scripts/test.sh.
source "$REPO/scripts/tansu.sh"
stop_broker_on_exit

apt_install() {
    command -v apt-get >/dev/null || return 1
    [[ "$(id -u)" == 0 ]] || return 1
    log "apt-get install $*"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- tools -------------------------------------------------------------------------------
command -v cargo >/dev/null || die "cargo is needed"
command -v python3 >/dev/null || die "python3 is needed"
if [[ -z "${BENCH_FONT:-}" && ! -f "$FONT_DEFAULT" ]]; then
    # plotters draws text with ab_glyph from a TTF file: Debian's DejaVu Sans.
    apt_install fonts-dejavu-core || log "warning: no font; set BENCH_FONT to a .ttf for the PNG's text"
fi
if [[ $SMOKE == 0 ]] && ! command -v valgrind >/dev/null; then
    apt_install valgrind || die "valgrind (callgrind) is needed for the full run"
fi

# --- build -------------------------------------------------------------------------------
log "cargo build --release -p kafka-bench"
cargo build --release -p kafka-bench
BENCH_BIN="$REPO/target/release/kafka-bench"

# --- broker ------------------------------------------------------------------------------
mkdir -p "$LOG_DIR"
BROKER_NAME="external"
BROKER_ARGS=()
if [[ -n "${KAFKA_BROKERS:-}" ]]; then
    log "broker at $KAFKA_BROKERS (external, from KAFKA_BROKERS; its CPU is not measured)"
else
    BROKER_NAME="$("$(install_tansu)" --version 2>&1 | head -n 1) (memory)"
    start_broker "$LOG_DIR/tansu.log"
    BROKER_ARGS=(--broker-pid "$BROKER_PID")
fi

# --- aiokafka ----------------------------------------------------------------------------
AIO_ARGS=()
if [[ $SMOKE == 0 ]]; then
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import aiokafka, sys; sys.exit(aiokafka.__version__ != '$AIOKAFKA_VERSION')" 2>/dev/null; then
        log "installing aiokafka==$AIOKAFKA_VERSION into ${VENV#"$REPO"/}"
        python3 -m venv "$VENV" || { apt_install python3-venv && python3 -m venv "$VENV"; } \
            || die "cannot create a venv (python3 -m venv)"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "aiokafka==$AIOKAFKA_VERSION"
    fi
    AIO_ARGS=(--aiokafka-python "$VENV/bin/python" --aiokafka-version "$AIOKAFKA_VERSION")
fi

# --- run ---------------------------------------------------------------------------------
log "uptime: $(uptime)"
"$BENCH_BIN" run --brokers "$KAFKA_BROKERS" --broker-name "$BROKER_NAME" \
    --work-dir "$LOG_DIR" --out-dir "$REPO/bench/results" "${BROKER_ARGS[@]}" "${AIO_ARGS[@]}" "$@"
