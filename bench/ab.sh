#!/usr/bin/env bash
# Two builds side by side: ./bench/ab.sh REV_A REV_B [ROUNDS] [SECONDS]
#
# For deciding whether a change makes a checkout cheaper on a machine too noisy for a run of each to
# tell (on the development VM, back-to-back closed-loop windows of the same build differ by up to 40%).
# Both revisions are built, each gets a database of its own in one PostgreSQL cluster, migrated with its
# own scripts and seeded by its own seeder (so a schema change is compared too), and both services take
# the POS mix at the same time, half the clients each, in ROUNDS windows of SECONDS. Whatever the machine
# does to one it does to the other (but a vacuum or checkpoint of one database hits one build: read the
# rounds, not only the sum), so the figures to read are the ratios: B's purchases over A's, and each build's CPU per purchase, its own
# process and its own PostgreSQL backends (told apart by Application Name). Reports go to bench/results/.
# The same revision twice compares settings: AB_ENV_A and AB_ENV_B add environment variables to one service
# each (space-separated NAME=value, e.g. AB_ENV_B="DOTNET_gcServer=0").
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bench/ab.sh REV_A REV_B [ROUNDS] [SECONDS]" >&2; exit 2; }
REV_A=$1; REV_B=$2; ROUNDS=${3:-8}; SECS=${4:-15}
MEMBERS=${BENCH_MEMBERS:-100000}
CLIENTS=${BENCH_CLIENTS:-16}
POOL=${BENCH_POOL:-4}
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
[ -x "$pg_bin/initdb" ] || { echo "ab: PostgreSQL binaries not found (./bench/run.sh installs them, or apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

work="$(mktemp -d /tmp/loyalty-ab.XXXXXX)"
chmod 755 "$work"
mkdir -p bench/results
report="bench/results/ab-$(date -u +%Y%m%dT%H%M%SZ).txt"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -d "$work/pg" ] && as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { echo "$*" | tee -a "$report"; }

case "$(uname -m)" in aarch64 | arm64) rid=linux-arm64 ;; *) rid=linux-x64 ;; esac
for side in a b; do
  rev=$REV_A; [ $side = b ] && rev=$REV_B
  echo "ab: building $side ($rev)"
  mkdir -p "$work/src-$side"
  git archive "$rev" | tar -x -C "$work/src-$side"
  dotnet publish "$work/src-$side/src/LoyaltyApi" -c Release -r "$rid" --self-contained false -o "$work/app-$side" -v quiet -nologo >/dev/null
  # Each revision seeds its own schema; the load comes from the working tree's driver for both.
  dotnet build "$work/src-$side/bench/LoyaltyApi.Bench" -c Release -o "$work/seeder-$side" -v quiet -nologo >/dev/null
done
dotnet build bench/LoyaltyApi.Bench -c Release -o "$work/driver" -v quiet -nologo >/dev/null
driver() { dotnet "$work/driver/LoyaltyApi.Bench.dll" "$@"; }

. bench/pg.sh
start_private_pg "$work" 55600
cs_of() { echo "Host=127.0.0.1;Port=$pg_port;Username=postgres;Database=loyalty_ab_$1;Maximum Pool Size=$POOL"; }
for side in a b; do
  psql_ -c "CREATE DATABASE loyalty_ab_$side"
  Database__Provider=Postgres Database__ConnectionString="$(cs_of $side)" dotnet "$work/app-$side/LoyaltyApi.dll" migrate >/dev/null
  # The seeder makes the same program (members, cards, lots, stores, keys) for the same member count.
  dotnet "$work/seeder-$side/LoyaltyApi.Bench.dll" seed Postgres "$(cs_of $side)" "$MEMBERS" "$work/keys-$side.txt" >/dev/null
  psql_ -d "loyalty_ab_$side" -c "VACUUM ANALYZE"
done
psql_ -c "CHECKPOINT"

free_port() { local p=$1; while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }
port_a=$(free_port 5301); port_b=$(free_port $((port_a + 1)))
port_of() { [ "$1" = a ] && echo "$port_a" || echo "$port_b"; }
for side in a b; do
  ASPNETCORE_URLS="http://127.0.0.1:$(port_of $side)" ASPNETCORE_ENVIRONMENT=Production Database__Provider=Postgres \
  Database__ConnectionString="$(cs_of $side);Application Name=ab-$side" Database__MigrateOnStartup=false \
  Auth__AdminApiKey=bench-admin-key Limits__PermitsPerSecond=0 Logging__LogLevel__Default=Warning \
    env $([ $side = a ] && echo "${AB_ENV_A:-}" || echo "${AB_ENV_B:-}") dotnet "$work/app-$side/LoyaltyApi.dll" >"$work/service-$side.log" 2>&1 &
  pids+=($!)
done
for side in a b; do
  up=0
  for _ in $(seq 1 150); do
    { exec 3<>"/dev/tcp/127.0.0.1/$(port_of $side)"; } 2>/dev/null && { exec 3<&-; up=1; break; }
    sleep 0.2
  done
  [ "$up" = 1 ] || { echo "ab: service $side did not start" >&2; cat "$work/service-$side.log" >&2; exit 1; }
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
backend_ticks() { # the CPU of one build's PostgreSQL backends
  local t=0 p
  for p in $(psql_ -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'ab-$1'"); do t=$((t + $(ticks "$p"))); done
  echo "$t"
}
hz=$(getconf CLK_TCK)
half=$((CLIENTS / 2))

say "== LoyaltyApi A/B $(date -u +%FT%TZ) on $(nproc) cores: A = $REV_A ($(git rev-parse --short "$REV_A")), B = $REV_B ($(git rev-parse --short "$REV_B"))"
say "$MEMBERS members; both services at once on one PostgreSQL cluster, a database each, $half clients each, pool $POOL each; $ROUNDS rounds of ${SECS}s${AB_ENV_A:+; A with $AB_ENV_A}${AB_ENV_B:+; B with $AB_ENV_B}"
# `wait` with no arguments would wait for the services too: wait for the drivers by their pids.
drivers=()
for side in a b; do driver load "http://127.0.0.1:$(port_of $side)" "$work/keys-$side.txt" "$MEMBERS" "$half" 15 2 >/dev/null & drivers+=($!); done
wait "${drivers[@]}"
declare -A s0 g0 # each side's CPU ticks (service, PostgreSQL backends) as a round starts
for round in $(seq 1 "$ROUNDS"); do
  for i in 0 1; do side=$([ $i = 0 ] && echo a || echo b); s0[$side]=$(ticks "${pids[$i]}"); g0[$side]=$(backend_ticks $side); done
  drivers=()
  for side in a b; do driver load "http://127.0.0.1:$(port_of $side)" "$work/keys-$side.txt" "$MEMBERS" "$half" 0 "$SECS" >"$work/round-$side.txt" & drivers+=($!); done
  wait "${drivers[@]}"
  line="round $round:"
  for i in 0 1; do
    side=$([ $i = 0 ] && echo a || echo b)
    pps=$(awk -F= '/^purchases_per_second/{print $2}' "$work/round-$side.txt")
    s=$(( $(ticks "${pids[$i]}") - ${s0[$side]} )); g=$(( $(backend_ticks $side) - ${g0[$side]} ))
    line+=$(awk -v side="${side^^}" -v pps="$pps" -v s="$s" -v g="$g" -v secs="$SECS" -v hz="$hz" \
      'BEGIN { n = pps * secs; printf " %s %.1f purchases/s, CPU per purchase: service %.3f ms, PostgreSQL %.3f ms;", side, pps, s * 1000 / hz / n, g * 1000 / hz / n }')
    echo "$side $pps $s $g" >>"$work/rounds.txt"
  done
  say "$line"
done
awk -v secs="$SECS" -v hz="$hz" '
  { n[$1] += $2 * secs; s[$1] += $3; g[$1] += $4 }
  END {
    printf "summary: B/A purchases %.3f; CPU per purchase A: service %.3f ms, PostgreSQL %.3f ms; B: service %.3f ms, PostgreSQL %.3f ms\n",
      n["b"] / n["a"], s["a"] * 1000 / hz / n["a"], g["a"] * 1000 / hz / n["a"], s["b"] * 1000 / hz / n["b"], g["b"] * 1000 / hz / n["b"]
  }' "$work/rounds.txt" | tee -a "$report"
echo "ab: report in $report"
