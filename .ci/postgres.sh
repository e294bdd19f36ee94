# shellcheck shell=bash
# A throwaway PostgreSQL server for the test suite; sourced by .ci/run (or by hand:
# `source .ci/postgres.sh && pg_start`, later `pg_stop`).
#
# pg_start installs Debian's postgresql package when no server binaries are found,
# creates a cluster in a new temporary directory (initdb as the unprivileged
# `postgres` user), starts it on 127.0.0.1 on a free port, creates the role
# `mpsqlite` (password auth, CREATEDB: the tests make scratch databases) and the
# database `mpsqlite_test`, and exports the URLs the tests read:
#   MPSQLITE_WSGI_TEST_POSTGRES_URL  tests/middleware
#   MPSQLITE_SITE_TEST_POSTGRES_URL  tests/example_site (scratch databases beside it)
# The server is tuned for a disposable test run: no fsync, no durability.

PG_DIR=""
PG_BIN=""

_pg_find_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            PG_BIN=$dir
            return 0
        fi
    done
    return 1
}

_pg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_pg_as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_start() {
    if ! _pg_find_bin; then
        echo "postgres: installing Debian's postgresql package" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || true
        # no default cluster: this script makes its own
        mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/mpsqlite-ci.conf
        apt-get install -y -qq postgresql >/dev/null
        _pg_find_bin || { echo "postgres: no initdb after installing postgresql" >&2; return 1; }
    fi
    PG_DIR=$(mktemp -d /tmp/mpsqlite-pg.XXXXXX)
    chmod 755 "$PG_DIR"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$PG_DIR"
    fi
    local port password url
    port=$(_pg_free_port)
    password="ci-$(date +%s)-$$"
    _pg_as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; return 1; }
    _pg_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start \
        >/dev/null || { cat "$PG_DIR/server.log" >&2; return 1; }
    _pg_as_postgres "$PG_BIN/psql" -q -h "$PG_DIR" -p "$port" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -c "CREATE ROLE mpsqlite LOGIN CREATEDB PASSWORD '$password'" \
        -c "CREATE DATABASE mpsqlite_test OWNER mpsqlite" >/dev/null
    url="postgresql+psycopg://mpsqlite:$password@127.0.0.1:$port/mpsqlite_test"
    export MPSQLITE_WSGI_TEST_POSTGRES_URL=$url
    export MPSQLITE_SITE_TEST_POSTGRES_URL=$url
    echo "postgres: $("$PG_BIN/postgres" --version) on 127.0.0.1:$port (data in $PG_DIR)"
}

pg_stop() {
    if [ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ]; then
        _pg_as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
    PG_DIR=""
}
