# Throwaway PostgreSQL clusters (of $QFT_PG_CONFIG, default Debian's PostgreSQL 15; PostgreSQL 18 works alike) under target/, owned by the postgres OS user (initdb refuses
# root), listening only on a unix socket in the cluster directory and a free loopback port.
# Source this file; call qft_cluster_start NAME, then use $QFT_PORT / $QFT_SOCK; qft_cluster_stop.

QFT_PG_CONFIG=${QFT_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
QFT_PGBIN=${QFT_PGBIN:-$("$QFT_PG_CONFIG" --bindir)}
# Its major version ("PostgreSQL 18.6" -> 18) and the cargo features that build the extension for it.
QFT_PG_MAJOR=${QFT_PG_MAJOR:-$("$QFT_PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')}
QFT_PG_FEATURES=${QFT_PG_FEATURES:-"--no-default-features --features pg$QFT_PG_MAJOR"}
# Client programs (psql, pg_dump, pgbench) of the same installation as the server: pg_dump refuses
# a newer server, and psql's \d output follows its own version.
export PATH="$QFT_PGBIN:$PATH"
QFT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

qft_free_port() {
    python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

qft_as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else sudo -u postgres -- "$@"; fi
}

# qft_cluster_start NAME [extra postgresql.conf lines...]
qft_cluster_start() {
    local name=$1; shift
    QFT_DIR="$QFT_ROOT/target/clusters/$name"
    QFT_SOCK="$QFT_DIR/sock"
    QFT_PORT=$(qft_free_port)
    qft_cluster_stop_dir "$QFT_DIR" >/dev/null 2>&1 || true
    rm -rf "$QFT_DIR"
    mkdir -p "$QFT_DIR"
    chown postgres "$QFT_DIR" 2>/dev/null || true
    qft_as_postgres "$QFT_PGBIN/initdb" -D "$QFT_DIR/data" -A trust -U postgres --no-sync >"$QFT_DIR/initdb.log" 2>&1 \
        || { cat "$QFT_DIR/initdb.log"; return 1; }
    qft_as_postgres mkdir -p "$QFT_SOCK"
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $QFT_PORT"
        echo "unix_socket_directories = '$QFT_SOCK'"
        echo "fsync = off"
        echo "log_min_messages = log"
        for line in "$@"; do echo "$line"; done
    } | qft_as_postgres tee -a "$QFT_DIR/data/postgresql.conf" >/dev/null
    qft_as_postgres "$QFT_PGBIN/pg_ctl" -D "$QFT_DIR/data" -l "$QFT_DIR/server.log" -w -t 60 start >/dev/null \
        || { cat "$QFT_DIR/server.log"; return 1; }
    export QFT_DIR QFT_SOCK QFT_PORT
    export PGHOST="$QFT_SOCK" PGPORT="$QFT_PORT" PGUSER=postgres PGDATABASE=postgres
}

qft_cluster_stop_dir() {
    [ -f "$1/data/postmaster.pid" ] && qft_as_postgres "$QFT_PGBIN/pg_ctl" -D "$1/data" -m immediate -w stop
}

qft_cluster_stop() {
    [ -n "${QFT_DIR:-}" ] && qft_cluster_stop_dir "$QFT_DIR" >/dev/null 2>&1
    return 0
}
