# Sourced by bench/run.sh and bench/ab.sh: a private PostgreSQL cluster under a work directory, with
# durable commits (fsync and synchronous_commit on) as production runs. Expects pg_bin and as_pg.
start_private_pg() { # work-dir first-port-to-try [extra server options]
  pg_port=$2
  while (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null; do pg_port=$((pg_port + 1)); done
  [ "$(id -u)" = "0" ] && chown postgres "$1"
  as_pg "$pg_bin/initdb" -D "$1/pg" -U postgres --auth=trust -E UTF8 >/dev/null
  as_pg "$pg_bin/pg_ctl" -D "$1/pg" -l "$1/pg.log" -w -t 60 \
    -o "-p $pg_port -k $1 -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=1GB -c fsync=on -c synchronous_commit=on ${3:-}" start >/dev/null
}
psql_() { psql -h 127.0.0.1 -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
