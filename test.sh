#!/usr/bin/env bash
# Runs every test suite: unit, T-SQL parsing, and the HTTP suites on SQLite and on PostgreSQL.
#
# PostgreSQL: uses LOYALTY_TEST_POSTGRES (an Npgsql connection string to a server where the user may
# create databases) when set; otherwise starts a private throw-away cluster from the local
# PostgreSQL binaries. With neither, the PostgreSQL suite cannot run: this says so loudly, and
# fails when REQUIRE_POSTGRES=1 (as CI sets it).
set -euo pipefail
cd "$(dirname "$0")"

configuration="${CONFIGURATION:-Release}"
results="$(pwd)/TestResults"
rm -rf "$results"
mkdir -p "$results"
pg_dir=""

cleanup() {
  if [ -n "$pg_dir" ] && [ -d "$pg_dir" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
}
trap cleanup EXIT

as_pg() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_private_postgres() {
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || return 1
  if [ "$(id -u)" = "0" ] && ! id postgres >/dev/null 2>&1; then return 1; fi
  pg_dir="$(mktemp -d /tmp/loyalty-pg.XXXXXX)"
  chmod 755 "$pg_dir"
  [ "$(id -u)" = "0" ] && chown postgres "$pg_dir"
  local port=55432
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 >"$pg_dir/initdb.log" 2>&1
  # Tests need no crash safety, so the private cluster skips fsync; the benchmark uses durable commits.
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
    -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c full_page_writes=off" start >/dev/null
  export LOYALTY_TEST_POSTGRES="Host=127.0.0.1;Port=$port;Username=postgres;Database=postgres;Pooling=true"
  # Crash-style restart for the fault-injection test; pg_ctl restart reuses the options above (-l keeps the server off the caller's pipes).
  local restart
  restart="$(printf '%q ' "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -m immediate -w -t 60 restart)"
  if [ "$(id -u)" = "0" ]; then restart="runuser -u postgres -- $restart"; fi
  export LOYALTY_TEST_PG_RESTART="$restart"
  echo "test.sh: started a private PostgreSQL ($("$pg_bin/postgres" --version)) on port $port"
}

filter=()
if [ -z "${LOYALTY_TEST_POSTGRES:-}" ] && ! start_private_postgres; then
  echo "##########################################################################" >&2
  echo "##  PostgreSQL NOT AVAILABLE: the PostgreSQL suite will NOT run.          ##" >&2
  echo "##  Install it (apt-get install postgresql) or set LOYALTY_TEST_POSTGRES. ##" >&2
  echo "##########################################################################" >&2
  if [ "${REQUIRE_POSTGRES:-0}" = "1" ]; then
    echo "test.sh: REQUIRE_POSTGRES=1 and no PostgreSQL: failing." >&2
    exit 1
  fi
  filter=(--filter "Database!=Postgres")
fi

set +e
dotnet test LoyaltyApi.sln -c "$configuration" --logger "trx" --logger "console;verbosity=minimal" \
  --results-directory "$results" "${filter[@]}" 2>&1 | tee "$results/console.log"
status=${PIPESTATUS[0]}
set -e

# Sum the counters of every results file (TRX), which colour codes in console output cannot garble.
passed=0; failed=0; skipped=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  p=$(echo "$counters" | sed -nE 's/.* passed="([0-9]+)".*/\1/p'); f=$(echo "$counters" | sed -nE 's/.* failed="([0-9]+)".*/\1/p')
  t=$(echo "$counters" | sed -nE 's/.* total="([0-9]+)".*/\1/p'); e=$(echo "$counters" | sed -nE 's/.* executed="([0-9]+)".*/\1/p')
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${t:-0} - ${e:-0}))
done

if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
  echo "test.sh: no test results found" >&2
  [ "$status" -ne 0 ] || status=1
fi
if [ "${#filter[@]}" -gt 0 ]; then
  echo "test.sh: WARNING: the PostgreSQL suite did not run." >&2
fi
if [ "$skipped" -gt 0 ] && [ "${REQUIRE_POSTGRES:-0}" = "1" ]; then
  echo "test.sh: $skipped test(s) were skipped; CI allows none." >&2
  [ "$status" -ne 0 ] || status=1
fi
echo "$passed passed, $failed failed"
exit "$status"
