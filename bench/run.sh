#!/usr/bin/env bash
# The benchmark, in one command: ./bench/run.sh
#
# Builds the service in Release, starts a private PostgreSQL with durable commits (fsync and
# synchronous_commit on, as production runs), seeds a realistic program (BENCH_MEMBERS members with
# cards and points, 8 stores with a pos key each), measures PostgreSQL's own ceiling with pgbench
# (TPC-B, the same client count, before and after the service's runs), then drives the service over
# HTTP from a separate process with a POS mix (quote + purchase, 30% paying with points, balance
# look-ups, a few refunds), closed loop and at a fixed rate, the fixed rate alternating with
# pgbench at that rate for the database's own latency. Then the same service on SQLite. Figures go
# to stdout and bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."

MEMBERS=${BENCH_MEMBERS:-100000}
CLIENTS=${BENCH_CLIENTS:-16}
SECONDS_RUN=${BENCH_SECONDS:-30}
# The closed loop measures a warm service. With dynamic PGO a service instruments and recompiles its
# hot code for its first 15-45 s under load; with 20 s of warm-up (after the 6 s cold start) the closed
# loop made 824-911 purchases/s where the same services made 860-1 022 in the paired windows minutes later.
WARMUP=${BENCH_WARMUP:-60}
RATE=${BENCH_RATE:-300}
COLD=${BENCH_COLD_SECONDS:-6}                     # the fixed rate from the first request after start
PORT=${BENCH_PORT:-5099}
PROVIDERS=${BENCH_PROVIDERS:-"postgres sqlite"}  # which providers to drive
PGBENCH=${BENCH_PGBENCH:-1}                       # 0 skips the pgbench ceiling (profiling runs only)
PG_STATS=${BENCH_PG_STATS:-0}                     # 1 loads pg_stat_statements and prints the costliest statements
FLOOR=${BENCH_FLOOR:-1}                           # 0 skips the floor (bench/LoyaltyApi.Floor: the same requests and round trips, no work)
PAIRS=${BENCH_PAIRS:-4}                           # pgbench/service pairs of short windows for the paired ratio; 0 skips them
PAIR_SECONDS=${BENCH_PAIR_SECONDS:-10}
# pgbench's scale: at least the client count, as pgbench's documentation asks (below it, TPC-B mostly
# measures clients queueing on the few branch rows, and the ceiling reads low).
PGBENCH_SCALE=${BENCH_PGBENCH_SCALE:-$((CLIENTS > 10 ? CLIENTS : 10))}

work="$(mktemp -d /tmp/loyalty-bench.XXXXXX)"
chmod 755 "$work"
mkdir -p bench/results
report="bench/results/$(date -u +%Y%m%dT%H%M%SZ).txt"
service_pid=""
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [ ! -x "$pg_bin/initdb" ] && [ "$(id -u)" = "0" ]; then
  echo "bench: installing PostgreSQL"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
fi
[ -x "$pg_bin/initdb" ] || { echo "bench: PostgreSQL binaries not found (apt-get install postgresql)" >&2; exit 1; }

as_pg() { if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# DAMON with a pageout scheme (proactive reclaim, set up by a VM's owner, not by this project) pages
# out memory it finds idle for a minute. Measured here at 300 purchases/s with a pool of 8: while it
# pages out, every ~0.55 s a cluster of purchases waits 20-60 ms (p99 26-37 ms); with it paused, p99
# 7-9 ms. The stall is kdamond's CPU, which grows with the processes mapping PostgreSQL's shared
# memory (hence the pool of 4 below: p99 21-24 ms with it running). The bench says whether it ran
# and what it paged out; BENCH_PAUSE_DAMON=1 (root) pauses it for the run and turns it back on at exit.
PAUSE_DAMON=${BENCH_PAUSE_DAMON:-0}
damon_on=()
for k in /sys/kernel/mm/damon/admin/kdamonds/*/; do
  [ -f "$k/state" ] && [ "$(cat "$k/state")" = on ] && damon_on+=("$k")
done
damon_paused=0
damon_paged_out_mb() { # what the running kdamonds' schemes have paged out since they started
  local k total=0 f
  for k in "${damon_on[@]}"; do
    echo update_schemes_stats >"$k/state" 2>/dev/null || true
    for f in "$k"contexts/*/schemes/*/stats/sz_applied; do [ -f "$f" ] && total=$((total + $(cat "$f"))); done
  done
  echo $((total / 1048576))
}
damon_resume() { local k; for k in "${damon_on[@]}"; do echo on >"$k/state" 2>/dev/null || true; done; }
cleanup() {
  [ "$damon_paused" = 1 ] && damon_resume
  [ -n "$service_pid" ] && kill "$service_pid" 2>/dev/null || true
  [ -d "$work/pg" ] && as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { echo "$*" | tee -a "$report"; }

echo "bench: building"
# Published for this machine's runtime, as the README says to publish a release: precompiled (ReadyToRun).
case "$(uname -m)" in aarch64 | arm64) rid=linux-arm64 ;; *) rid=linux-x64 ;; esac
dotnet publish src/LoyaltyApi -c Release -r "$rid" --self-contained false -o "$work/app" -v quiet -nologo >/dev/null
dotnet build bench/LoyaltyApi.Bench -c Release -o "$work/driver" -v quiet -nologo >/dev/null
[ "$FLOOR" = 1 ] && dotnet publish bench/LoyaltyApi.Floor -c Release -o "$work/floor" -v quiet -nologo >/dev/null
driver() { dotnet "$work/driver/LoyaltyApi.Bench.dll" "$@"; }

. bench/pg.sh
start_private_pg "$work" 55500 "$([ "$PG_STATS" = 1 ] && echo "-c shared_preload_libraries=pg_stat_statements")"
psql_ -c "CREATE DATABASE loyalty_bench" -c "CREATE DATABASE pgbench"
# About two connections per database core (PostgreSQL's own rule of thumb, cores x 2 + 1): more
# only add lock and WAL contention on a small server (200 connections collapse under an open-loop
# 200/s). Measured on 2 cores: 4 give the closed loop the purchases/s of 8 for 8-10% less machine
# CPU per checkout, and at 300/s a p99 of 20-22 ms instead of 30-33 ms while DAMON runs, whose
# kdamond spends CPU in proportion to the processes mapping PostgreSQL's shared memory (2 cap
# the closed loop at about 620 purchases/s). Statements outside a transaction (quotes, look-ups) are
# multiplexed on the service's 2 connections of their own (Database:MultiplexedConnections), so 6
# backends in all: with one shared pool of 4 they queued behind purchases holding every connection
# while the machine idled (84-90% busy against 92-95%; 10 of 11 alternating 12 s pairs faster,
# though whole bench runs could not tell them apart: see the README).
POOL=${BENCH_POOL:-4}
pg_cs="Host=127.0.0.1;Port=$pg_port;Username=postgres;Database=loyalty_bench;Maximum Pool Size=$POOL"

say "== LoyaltyApi benchmark $(date -u +%FT%TZ) on $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; $MEMBERS members, $CLIENTS clients, ${SECONDS_RUN}s runs, PostgreSQL pool $POOL for transactions + ${Database__MultiplexedConnections:-2} multiplexed"
say "PostgreSQL: $(psql_ -c 'SHOW server_version'), fsync=$(psql_ -c 'SHOW fsync'), synchronous_commit=$(psql_ -c 'SHOW synchronous_commit')"
if [ "${#damon_on[@]}" -gt 0 ]; then
  actions=$(for k in "${damon_on[@]}"; do cat "$k"contexts/*/schemes/*/action 2>/dev/null; done | sort -u | tr '\n' ' ')
  if [ "$PAUSE_DAMON" = 1 ]; then
    for k in "${damon_on[@]}"; do echo off >"$k/state" || { echo "bench: cannot pause DAMON (root only)" >&2; exit 1; }; done
    damon_paused=1
    say "DAMON: ${#damon_on[@]} kdamond(s) with schemes: ${actions:-none}; paused for this run (BENCH_PAUSE_DAMON=1), on again at exit"
  else
    damon_mb0=$(damon_paged_out_mb)
    say "DAMON: ${#damon_on[@]} kdamond(s) with schemes: ${actions:-none}; left running (BENCH_PAUSE_DAMON=1 pauses it): kdamond's CPU bursts stall every process for tens of ms"
  fi
fi

start_service() { # provider connection-string
  ASPNETCORE_URLS="http://127.0.0.1:$PORT" ASPNETCORE_ENVIRONMENT=Production \
  Database__Provider="$1" Database__ConnectionString="$2" Database__MigrateOnStartup=false \
  Auth__AdminApiKey=bench-admin-key Limits__PermitsPerSecond=0 Logging__LogLevel__Default=Warning \
    dotnet "$work/app/LoyaltyApi.dll" >"$work/service-$1.log" 2>&1 &
  service_pid=$!
  wait_healthy "$work/service-$1.log"
}
wait_healthy() { # log
  for _ in $(seq 1 150); do healthy && return 0; sleep 0.2; done
  echo "bench: the service did not start" >&2; cat "$1" >&2; exit 1
}
healthy() { # plain bash, so the benchmark needs no curl
  { exec 3<>"/dev/tcp/127.0.0.1/$PORT"; } 2>/dev/null || return 1
  printf 'GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  local status; read -r _ status _ <&3; exec 3<&-
  [ "$status" = "200" ]
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$service_pid/stat"; }
# CPU of every PostgreSQL process (server and backends): where the database's share of the cores goes.
# Busy and idle ticks of the whole machine, to tell a CPU-bound run from a latency-bound one.
machine_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; }
# Machine CPU (all processes, all cores) in ms per unit of work: machine_ms_per "$m0" "$m1" units-per-second
machine_ms_per() { echo "$1 $2" | awk -v n="$(nproc)" -v p="$3" '{printf "%.3f", 1000 * n * ($3 - $1) / (($3 - $1) + ($4 - $2)) / p}'; }
pg_ticks() { local t=0 p; for p in $(head -n 1 "$work/pg/postmaster.pid") $(pgrep -P "$(head -n 1 "$work/pg/postmaster.pid")" || true); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
# What the service spent per purchase, from its own counters (GET /v1/runtime), which the driver reads
# as its measuring starts and ends (BENCH_RUNTIME_FILE): allocations, thread-pool work items (hand-offs
# from one thread to another, often a wake-up), collections and their pauses, CPU. Several windows
# (the fixed-rate slices) are summed. Each <prefix>.1 ends with the purchases of its window.
runtime_per_purchase() { # prefix...
  local f files=()
  for f in "$@"; do files+=("$f.0" "$f.1"); done
  awk 'FNR == 1 {k++} k % 2 == 1 {a[$1] = $2; next} $1 == "purchases" {n += $2; next} {d[$1] += $2 - a[$1]}
    END {if (n == 0) {print "no purchases counted"; exit}
      cpu = d["cpuUserMs"] + d["cpuKernelMs"]
      printf "%.1f KB allocated, %.1f thread-pool work items, %.4f collections (gen1 %.4f, gen2 %.4f), %.3f ms GC pause, %.2f ms CPU (%.0f%% in the kernel); %d purchases",
        d["allocatedBytes"] / 1024 / n, d["threadPoolWorkItems"] / n, d["gen0Collections"] / n, d["gen1Collections"] / n, d["gen2Collections"] / n,
        d["gcPauseMs"] / n, cpu / n, (cpu > 0 ? 100 * d["cpuKernelMs"] / cpu : 0), n}' "${files[@]}"
}
driver_counting() { BENCH_ADMIN_KEY=bench-admin-key BENCH_RUNTIME_FILE="$1" driver "${@:2}"; }
peak_mb() { awk '/VmHWM/{printf "%.0f", $2 / 1024}' "/proc/$service_pid/status"; }
stop_service() { kill "$service_pid"; wait "$service_pid" 2>/dev/null || true; service_pid=""; }

run_provider() { # provider connection-string label
  local provider=$1 cs=$2 label=$3
  Database__Provider="$provider" Database__ConnectionString="$cs" dotnet "$work/app/LoyaltyApi.dll" migrate >/dev/null
  driver seed "$provider" "$cs" "$MEMBERS" "$work/keys.txt" | tee -a "$report"
  start_service "$provider" "$cs"
  # Cold start: the fixed rate from the service's first request, nothing warmed, as right after a deploy.
  driver rate "http://127.0.0.1:$PORT" "$work/keys.txt" "$MEMBERS" "$RATE" 0 "$COLD" >"$work/cold-$label.txt"
  say ""
  say "-- $label, cold start: $RATE purchases/s for ${COLD}s from the first request after start"
  grep -E '^(purchase|statuses):' "$work/cold-$label.txt" | tee -a "$report"
  local t0 c0 t1 c1 hz p0 p1
  hz=$(getconf CLK_TCK)
  [ "$PG_STATS" = 1 ] && [ "$provider" = Postgres ] && psql_ -d loyalty_bench -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
  local m0 m1
  t0=$(date +%s.%N); c0=$(cpu_ticks); p0=$(pg_ticks); m0=$(machine_ticks)
  driver_counting "$work/runtime-$label" load "http://127.0.0.1:$PORT" "$work/keys.txt" "$MEMBERS" "$CLIENTS" "$WARMUP" "$SECONDS_RUN" >"$work/load-$label.txt"
  t1=$(date +%s.%N); c1=$(cpu_ticks); p1=$(pg_ticks); m1=$(machine_ticks)
  say ""
  say "-- $label, closed loop ($CLIENTS clients, ${WARMUP}s warm-up + ${SECONDS_RUN}s)"
  tee -a "$report" <"$work/load-$label.txt"
  say "service CPU: $(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v s="$t0" -v e="$t1" 'BEGIN{printf "%.2f", (b - a) / hz / (e - s)}') cores busy on average; peak memory (VmHWM) $(peak_mb) MB"
  say "machine CPU: $(echo "$m0 $m1" | awk '{printf "%.0f%% busy", 100 * ($3 - $1) / (($3 - $1) + ($4 - $2))}') (all processes, ${WARMUP}s warm-up included)"
  local pps svc_cores pg_cores
  pps=$(awk -F= '/^purchases_per_second/{print $2}' "$work/load-$label.txt")
  machine_ms_per "$m0" "$m1" "$pps" >"$work/load-$label.cpu"
  svc_cores=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v s="$t0" -v e="$t1" 'BEGIN{printf "%.3f", (b - a) / hz / (e - s)}')
  pg_cores=$(awk -v a="$p0" -v b="$p1" -v hz="$hz" -v s="$t0" -v e="$t1" 'BEGIN{printf "%.3f", (b - a) / hz / (e - s)}')
  [ "$provider" = Postgres ] && say "PostgreSQL CPU: $pg_cores cores busy on average"
  # Steadier than purchases/s on a shared machine: CPU spent per checkout (its quote, and its share of look-ups and refunds).
  say "service per checkout (a purchase with its quote and its share of look-ups and refunds), measured window: $(runtime_per_purchase "$work/runtime-$label")"
  say "CPU per purchase: service $(awk -v c="$svc_cores" -v p="$pps" 'BEGIN{printf "%.2f", 1000 * c / p}') ms$([ "$provider" = Postgres ] && awk -v c="$pg_cores" -v p="$pps" 'BEGIN{printf ", PostgreSQL %.2f ms", 1000 * c / p}')"
  if [ "$PG_STATS" = 1 ] && [ "$provider" = Postgres ]; then
    say "costliest statements (warm-up and run): calls, total ms, mean ms, rows, query"
    psql_ -d loyalty_bench -F ' | ' -c "SELECT calls, round(total_exec_time::numeric), round(mean_exec_time::numeric, 3), rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 20" | tee -a "$report"
  fi
  if [ "$provider" = Postgres ] && [ "$PGBENCH" = 1 ]; then
    fixed_rate_beside_pgbench "$label"
    # After the fixed rate, so the pairs' extra writes (and the autovacuum they bring) never fall into its slices.
    paired_ratio
  else
    [ "$provider" = Postgres ] && psql_ -c "CHECKPOINT"
    driver_counting "$work/runtime-rate-$label" rate "http://127.0.0.1:$PORT" "$work/keys.txt" "$MEMBERS" "$RATE" 5 "$SECONDS_RUN" "$work/rate-$label.ms" >"$work/rate-$label.txt"
    say "-- $label, fixed rate $RATE purchases/s for ${SECONDS_RUN}s"
    tee -a "$report" <"$work/rate-$label.txt"
    say "service per purchase at the fixed rate, after warm-up: $(runtime_per_purchase "$work/runtime-rate-$label")"
  fi
  stop_service
}

# Latency percentiles of one number (ms) per line, nearest rank, as the driver counts them.
percentiles() {
  sort -n | awk 'function at(q,  i) { i = int(NR * q); if (i < NR * q) i++; if (i < 1) i = 1; return a[i] }
    {a[NR] = $1} END {printf "n=%d p50=%.2fms p95=%.2fms p99=%.2fms max=%.2fms", NR, at(0.5), at(0.95), at(0.99), a[NR]}'
}
p99_of() { percentiles | sed 's/.*p99=\([0-9.]*\)ms.*/\1/'; }
# pgbench's latency at the fixed rate, counted like the driver counts, from the scheduled start: with
# --rate, the time pgbench logs (3rd column) already runs from the schedule and includes the lag it
# also logs on its own (7th column), so the lag is not added again.
# Its first 5 seconds are left out, like the driver's warm-up: new connections start with cold caches.
pgbench_rate_slice() { # seconds log-prefix
  local from
  from=$(awk -v t="$(date +%s.%N)" 'BEGIN{printf "%.6f", t + 5}')
  if ! (cd "$work" && pgbench -h 127.0.0.1 -p "$pg_port" -U postgres -c "$CLIENTS" -j 2 -R "$RATE" -T "$(($1 + 5))" -l --log-prefix="$2" pgbench >"$2.out" 2>&1); then
    echo "bench: pgbench at a fixed rate failed" >&2; cat "$2.out" >&2; exit 1
  fi
  cat "$2".[0-9]* | awk -v from="$from" '$5 + $6 / 1e6 >= from {print $3 / 1000.0}'
}
# The fixed-rate run and the database's own latency at that rate, in alternating slices: this
# machine's stalls come and go over minutes, so the service's tail is compared with pgbench's from
# the same minutes. Each slice starts after a checkpoint, so neither pays for the other's dirty pages.
fixed_rate_beside_pgbench() { # label
  local slices=${BENCH_RATE_SLICES:-3} i len
  [ "$slices" -ge 1 ] || slices=1
  len=$((SECONDS_RUN / slices)); [ "$len" -ge 1 ] || len=1
  : >"$work/rate-$1.ms"; : >"$work/pgbench-rate.ms"
  say "-- $1, fixed rate $RATE purchases/s, $slices slices of ${len}s, each after ${len}s of pgbench TPC-B at the same rate (5s warm-up each)"
  for i in $(seq 1 "$slices"); do
    psql_ -c "CHECKPOINT"
    pgbench_rate_slice "$len" "$work/pgbench-slice-$i" >"$work/pgbench-slice-$i.ms"
    cat "$work/pgbench-slice-$i.ms" >>"$work/pgbench-rate.ms"
    psql_ -c "CHECKPOINT"
    driver_counting "$work/runtime-rate-slice-$i" rate "http://127.0.0.1:$PORT" "$work/keys.txt" "$MEMBERS" "$RATE" 5 "$len" "$work/rate-slice-$i.ms" >"$work/rate-slice-$i.txt"
    cat "$work/rate-slice-$i.ms" >>"$work/rate-$1.ms"
    say "slice $i: pgbench p99 $(p99_of <"$work/pgbench-slice-$i.ms") ms, service p99 $(p99_of <"$work/rate-slice-$i.ms") ms; $(grep -E '^statuses' "$work/rate-slice-$i.txt")"
  done
  echo "purchase: $(percentiles <"$work/rate-$1.ms")" >"$work/rate-$1.txt"
  say "service, all slices: $(percentiles <"$work/rate-$1.ms")"
  say "service per purchase at the fixed rate, after each slice's warm-up: $(runtime_per_purchase $(for i in $(seq 1 "$slices"); do echo "$work/runtime-rate-slice-$i"; done))"
  pgbench_latency=$(percentiles <"$work/pgbench-rate.ms")
  say "pgbench, all slices: $pgbench_latency"
}

# The machine's speed drifts over minutes by more than the target's margin (pgbench alone has made
# 1 077 and 1 836 tps in runs minutes apart), so beside the before/after ratio the service, still warm,
# and pgbench take turns in short windows, alternating which goes first; each pair's ratio compares
# the two within the same half-minute, and the median of the pairs is reported.
paired_ratio() {
  [ "$PAIRS" -gt 0 ] || return 0
  local i tps pps first
  : >"$work/pairs.txt"
  say "-- paired ratio: $PAIRS pairs of ${PAIR_SECONDS}s windows, pgbench TPC-B and the service's closed loop (2s warm-up) in turn"
  for i in $(seq 1 "$PAIRS"); do
    for first in pgbench service; do
      if [ $((i % 2)) = 0 ]; then first=$([ "$first" = pgbench ] && echo service || echo pgbench); fi
      if [ "$first" = pgbench ]; then
        pgbench -h 127.0.0.1 -p "$pg_port" -U postgres -c "$CLIENTS" -j 2 -T "$PAIR_SECONDS" pgbench >"$work/pair-pgbench-$i.txt" 2>&1
      else
        driver load "http://127.0.0.1:$PORT" "$work/keys.txt" "$MEMBERS" "$CLIENTS" 2 "$PAIR_SECONDS" >"$work/pair-load-$i.txt"
      fi
    done
    tps=$(awk -F'= ' '/^tps/{split($2, a, " "); print a[1]; exit}' "$work/pair-pgbench-$i.txt")
    pps=$(awk -F= '/^purchases_per_second/{print $2}' "$work/pair-load-$i.txt")
    echo "$pps $tps" | awk '{printf "%.3f\n", $1 / $2}' >>"$work/pairs.txt"
    say "pair $i ($([ $((i % 2)) = 0 ] && echo "service first" || echo "pgbench first")): pgbench tps $tps, purchases/s $pps, ratio $(tail -n 1 "$work/pairs.txt")"
  done
  sort -n "$work/pairs.txt" | awk '{r[NR] = $1} END {printf "median %.2f, range %s-%s", NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2, r[1], r[NR]}' >"$work/pairs.summary"
  say "paired ratio: $(cat "$work/pairs.summary")"
}
# PostgreSQL's own ceiling, closed loop with the same client count. The machine's speed drifts over
# minutes, so it is measured before and after the service's PostgreSQL runs and the ratio uses the mean.
pgbench_closed() { # label
  local m0 m1 tps
  m0=$(machine_ticks)
  pgbench -h 127.0.0.1 -p "$pg_port" -U postgres -c "$CLIENTS" -j 2 -T "$SECONDS_RUN" pgbench >"$work/pgbench-$1.txt" 2>&1
  m1=$(machine_ticks)
  tps=$(awk -F'= ' '/^tps/{split($2, a, " "); print a[1]; exit}' "$work/pgbench-$1.txt")
  # Machine CPU per transaction (all processes: pgbench and PostgreSQL), for the CPU-normalised ratio.
  machine_ms_per "$m0" "$m1" "$tps" >"$work/pgbench-$1.cpu"
  echo "$tps"
}
pgbench_before=0 pgbench_after=0 pgbench_tps=0 pgbench_latency="not measured"
if [ "$PGBENCH" = 1 ]; then
  echo "bench: pgbench"
  pgbench -h 127.0.0.1 -p "$pg_port" -U postgres -i -s "$PGBENCH_SCALE" -q pgbench >/dev/null 2>&1
  pgbench_before=$(pgbench_closed before)
  say ""
  say "-- pgbench TPC-B, scale $PGBENCH_SCALE, $CLIENTS clients, ${SECONDS_RUN}s, before the service: tps=$pgbench_before"
fi

pg_pps=0 sqlite_pps=0
touch "$work/rate-postgres.txt" "$work/rate-sqlite.txt"
if [[ " $PROVIDERS " == *" postgres "* ]]; then
  echo "bench: PostgreSQL"
  run_provider Postgres "$pg_cs" postgres
  pg_pps=$(awk -F= '/^purchases_per_second/{print $2}' "$work/load-postgres.txt")
fi
if [ "$PGBENCH" = 1 ]; then
  echo "bench: pgbench again"
  pgbench_after=$(pgbench_closed after)
  say ""
  say "-- pgbench TPC-B, $CLIENTS clients, ${SECONDS_RUN}s, after the service: tps=$pgbench_after"
  pgbench_tps=$(awk -v a="$pgbench_before" -v b="$pgbench_after" 'BEGIN{printf "%.1f", (a + b) / 2}')
fi
# The floor: what the same HTTP requests and database round trips cost with none of the service's work,
# in the same minutes, on a database of its own. The service's gap to it is its own work.
floor_pps=0
if [[ " $PROVIDERS " == *" postgres "* ]] && [ "$FLOOR" = 1 ]; then
  echo "bench: floor"
  psql_ -c "CREATE DATABASE floor"
  ASPNETCORE_URLS="http://127.0.0.1:$PORT" Database__ConnectionString="Host=127.0.0.1;Port=$pg_port;Username=postgres;Database=floor;Maximum Pool Size=$POOL" \
    dotnet "$work/floor/LoyaltyApi.Floor.dll" >"$work/floor.log" 2>&1 &
  service_pid=$!
  wait_healthy "$work/floor.log"
  m0=$(machine_ticks)
  driver load "http://127.0.0.1:$PORT" "$work/keys.txt" "$MEMBERS" "$CLIENTS" "$WARMUP" "$SECONDS_RUN" >"$work/load-floor.txt"
  m1=$(machine_ticks)
  floor_pps=$(awk -F= '/^purchases_per_second/{print $2}' "$work/load-floor.txt")
  machine_ms_per "$m0" "$m1" "$floor_pps" >"$work/load-floor.cpu"
  say ""
  say "-- floor (bench/LoyaltyApi.Floor: the same requests and round trips, no work), closed loop ($CLIENTS clients, ${WARMUP}s warm-up + ${SECONDS_RUN}s)"
  grep -E '^(purchases_per_second|purchase:|quote:)' "$work/load-floor.txt" | tee -a "$report"
  say "machine CPU per checkout: $(cat "$work/load-floor.cpu") ms"
  stop_service
fi
if [[ " $PROVIDERS " == *" sqlite "* ]]; then
  echo "bench: SQLite"
  run_provider Sqlite "Data Source=$work/bench.db" sqlite
  sqlite_pps=$(awk -F= '/^purchases_per_second/{print $2}' "$work/load-sqlite.txt")
fi

say ""
say "== summary"
# A provider left out of BENCH_PROVIDERS gets no summary line, rather than zeros.
if [ -s "$work/rate-postgres.txt" ]; then
  say "PostgreSQL purchases/s $pg_pps vs pgbench TPC-B tps $pgbench_tps (mean of $pgbench_before before and $pgbench_after after): ratio $(awk -v a="$pg_pps" -v b="$pgbench_tps" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}') (target >= 0.60)"
  if [ -s "$work/pairs.summary" ]; then
    say "paired ratio (pgbench and the service in turn, $PAIRS pairs of ${PAIR_SECONDS}s): $(cat "$work/pairs.summary") (target >= 0.60)"
  fi
  if [ "$PGBENCH" = 1 ] && [ -s "$work/load-postgres.cpu" ]; then
    # Steadier than the throughput ratio on a noisy machine: what one checkout costs the whole machine
    # against what one pgbench transaction costs it (both closed loop, driver or pgbench included).
    pgb_cpu=$(cat "$work/pgbench-before.cpu" "$work/pgbench-after.cpu" | awk '{s += $1} END {printf "%.3f", s / NR}')
    say "machine CPU per transaction: pgbench $pgb_cpu ms, POS checkout $(cat "$work/load-postgres.cpu") ms: CPU-normalised ratio $(awk -v a="$pgb_cpu" -v b="$(cat "$work/load-postgres.cpu")" 'BEGIN{printf "%.2f", a / b}')"
  fi
  if [ -s "$work/load-floor.cpu" ]; then
    say "floor (the same requests and round trips, no work): purchases/s $floor_pps, ratio $(awk -v a="$floor_pps" -v b="$pgbench_tps" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}'); machine CPU per checkout $(cat "$work/load-floor.cpu") ms, the service $(cat "$work/load-postgres.cpu") ms"
  fi
  say "PostgreSQL fixed rate $RATE/s: $(grep '^purchase:' "$work/rate-postgres.txt") (target p99 < 25 ms)"
  say "pgbench TPC-B fixed rate $RATE/s, the database alone, in the same minutes: $pgbench_latency"
  say "PostgreSQL cold start, $RATE/s for ${COLD}s from the first request: $(grep '^purchase:' "$work/cold-postgres.txt")"
fi
if [ -s "$work/rate-sqlite.txt" ]; then
  say "SQLite purchases/s $sqlite_pps; fixed rate $RATE/s: $(grep '^purchase:' "$work/rate-sqlite.txt"); cold start: $(grep '^purchase:' "$work/cold-sqlite.txt")"
fi
if [ "${#damon_on[@]}" -gt 0 ] && [ "$damon_paused" = 0 ]; then
  say "DAMON paged out $(( $(damon_paged_out_mb) - damon_mb0 )) MB during the run"
fi
echo "bench: report in $report"
