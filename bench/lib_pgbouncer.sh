# shellcheck shell=bash
# Sourced by the bench scripts: PgBouncer 1.18 in transaction mode in front of the demo's primary
# (database `app`, user `app` with SCRAM), the same settings wherever it is compared; and where the
# demo's servers have their sockets.

# pgbouncer_config DIR LISTEN_PORT PRIMARY_PORT POOL_SIZE MAX_CLIENT_CONN [SOCKET_DIR] [SERVER_HOST]:
# write DIR/pgbouncer.ini and DIR/userlist.txt (a Unix-domain socket in SOCKET_DIR too, when given;
# SERVER_HOST, 127.0.0.1 by default, may be the directory of the primary's socket).
pgbouncer_config() {
    mkdir -p "$1"
    cat >"$1/pgbouncer.ini" <<INI
[databases]
app = host=${7:-127.0.0.1} port=$3 dbname=app

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir = ${6:-}
auth_type = scram-sha-256
auth_file = $1/userlist.txt
pool_mode = transaction
default_pool_size = $4
max_client_conn = $5
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
INI
    echo '"app" "app-secret"' >"$1/userlist.txt"
}

# demo_socket_dir CONFIG PORT: the directory of the Unix-domain socket the demo config CONFIG names
# for its PostgreSQL server on PORT (`socket: "<dir>/.s.PGSQL.<port>"`); nothing when it names none.
demo_socket_dir() {
    sed -n "s|.*address: \"127.0.0.1:$2\", socket: \"\([^\"]*\)/\.s\.PGSQL\.$2\".*|\1|p" "$1" | head -n1
}
