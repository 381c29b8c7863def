#!/usr/bin/env bash
# Throughput and p99 latency of idem-gateway against nginx, on this machine, in one run.
#
#   bench/gateway/run.sh [STORE...]     default: memory
#
# STORE is a --store value for the gateway, or one of these shorthands:
#   memory          the in-memory store
#   lmdb            the embedded durable store in a scratch directory (durability "process")
#   lmdb@power      the same with durability = "power" (fsync before answering)
#   redis           a redis-server that run.sh starts on a free port (no persistence)
#   redis://...     a Redis you run yourself
#
# Starts on free 127.0.0.1 ports: nginx `return 200` as the upstream, nginx proxy_pass in
# front of it (the baseline), and for each STORE in turn idem-gateway --threads 1 in front
# of the same upstream; runs wrk against each, and prints a markdown table with every
# row's throughput divided by nginx proxy_pass's and by the first store's same scenario,
# and how busy the server under test's CPU was (near 100%: the row measures the server,
# not the load side). Everything stops on exit; idem-gateway binds port 0 and run.sh reads
# its ports from its start-up log line.
#
# CPU pinning (taskset): the server under test (nginx proxy or idem-gateway, one worker
# / one thread each) gets CPU $SUT_CPU alone; wrk, the upstream nginx and Redis share CPU
# $LOAD_CPU. So both proxies are measured on one core with the same neighbours, and the
# load generator never steals from the proxy. On a one-CPU machine nothing is pinned.
#
# ROUNDS=N repeats the whole sequence N times (a fresh gateway, store and Redis each round)
# and reports, per row, the median of the rounds' requests/s and p99, and the median of
# each round's ratios: a shared machine drifts over minutes, and a ratio taken within one
# round compares runs that are a minute apart at most. A second table gives each round's
# ratios, so that the spread shows.
#
# Environment: DURATION (10s), CONNECTIONS (32), THREADS (2, wrk), SUT_CPU (0),
# LOAD_CPU (1), ROUNDS (1), IDEM_GATEWAY (build/release/apps/gateway/idem-gateway; built if
# missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

stores=("$@")
[[ ${#stores[@]} -gt 0 ]] || stores=(memory)
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
wrk_threads=${THREADS:-2}
rounds=${ROUNDS:-1}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: ROUNDS must be a positive integer" >&2; exit 2; }
sut_cpu=${SUT_CPU:-0}
load_cpu=${LOAD_CPU:-1}
gateway=${IDEM_GATEWAY:-$root/build/release/apps/gateway/idem-gateway}

for tool in nginx wrk curl python3 $([[ " ${stores[*]} " == *" redis "* ]] && echo redis-server); do
  command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] ||
    { echo "run.sh: $tool is missing (scripts/setup installs it)" >&2; exit 1; }
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

if [[ ! -x $gateway ]]; then
  echo "==> building idem-gateway (release)" >&2
  (cd "$root" && cmake --preset release >/dev/null &&
     cmake --build --preset release -j "$(nproc)" --target idem-gateway >/dev/null)
fi

if [[ $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
  on_sut=(taskset -c "$sut_cpu")
  on_load=(taskset -c "$load_cpu")
  pinning="server under test on CPU $sut_cpu; wrk and the upstream nginx on CPU $load_cpu"
else
  on_sut=()
  on_load=()
  pinning="not pinned (fewer than 2 CPUs)"
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

work=$(mktemp -d "${TMPDIR:-/tmp}/idem-bench.XXXXXX")
chmod 755 "$work"  # nginx workers may run as another user
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_http() {  # url: waits until anything answers
  for _ in $(seq 200); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "run.sh: nothing answers at $1" >&2
  for log in "$work"/*.log; do echo "--- $log" >&2; tail -5 "$log" >&2; done
  exit 1
}

start_nginx() {  # name conf port [upstream_port] [taskset...]
  local name=$1 conf=$2 port=$3 upstream_port=$4
  shift 4
  sed -e "s|@DIR@|$work|g" -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|$upstream_port|g" \
    "$here/$conf" >"$work/$name.conf"
  "$@" "$nginx_bin" -p "$work" -e "$work/$name-error.log" -c "$work/$name.conf" \
    >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/"
}

upstream_port=$(free_port)
proxy_port=$(free_port)

start_nginx return nginx-return.conf "$upstream_port" 0 "${on_load[@]}"
start_nginx proxy nginx-proxy.conf "$proxy_port" "$upstream_port" "${on_sut[@]}"

# Results per "scenario#round".
declare -A rps p99 non2xx socket_errors sut_busy
round=1
cpu_times() {  # busy and idle jiffies of the server under test's CPU
  awk -v cpu="cpu$sut_cpu" '$1 == cpu { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat
}
run() {  # name port script
  local name=$1 port=$2 script=$3 out="$work/wrk-$RANDOM.txt" key="$1#$round" before after
  echo "==> $name: wrk -t$wrk_threads -c$connections -d$duration (round $round of $rounds)" >&2
  before=$(cpu_times)
  timeout 120 "${on_load[@]}" wrk -t"$wrk_threads" -c"$connections" -d"$duration" --latency \
    -s "$here/$script" "http://127.0.0.1:$port/payments" >"$out" 2>&1 || true
  after=$(cpu_times)
  # How busy the server under test's CPU was: near 100% means the row measures the server;
  # well below, the load side (wrk, the upstream) held it back.
  if [[ ${#on_sut[@]} -gt 0 ]]; then
    sut_busy[$key]=$(awk -v b="$before" -v a="$after" 'BEGIN { split(b, x, " "); split(a, y, " ")
      busy = y[1] - x[1]; idle = y[2] - x[2]; if (busy + idle > 0) printf "%.0f", 100 * busy / (busy + idle) }')
  fi
  rps[$key]=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  # In ms, whatever unit wrk chose.
  p99[$key]=$(awk '$1 == "99%" { v = $2; f = 1
    if (v ~ /us$/) f = 0.001; else if (v ~ /ms$/) f = 1; else if (v ~ /s$/) f = 1000
    sub(/[a-z]+$/, "", v); printf "%.2f", v * f }' "$out")
  non2xx[$key]=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  socket_errors[$key]=$(awk '/Socket errors:/ {print $0}' "$out")
  if [[ -z ${rps[$key]} ]]; then cat "$out" >&2; fi
}

redis_url=
redis_pid=
start_redis() {  # starts a fresh redis-server, sets redis_url (not in a subshell: pids)
  local port
  port=$(free_port)
  "${on_load[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" >"$work/redis.log" 2>&1 &
  redis_pid=$!
  pids+=($redis_pid)
  for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  redis_url="redis://127.0.0.1:$port"
}

gateway_pid=
gateway_port=
start_gateway() {  # store-spec: starts idem-gateway, sets gateway_port
  local spec=$1 store config="$work/gateway-$RANDOM.toml"
  : >"$config"
  case $spec in
    lmdb) store="lmdb:$work/lmdb-$RANDOM" ;;
    lmdb@power) store="lmdb:$work/lmdb-$RANDOM"; echo 'durability = "power"' >"$config" ;;
    redis) start_redis; store=$redis_url ;;
    *) store=$spec ;;
  esac
  # Port 0: the gateway binds free ports itself and names them in its start-up line.
  local log="$work/gateway-$spec-$round.log" started=
  (cd "$work" && exec "${on_sut[@]}" "$gateway" --listen 127.0.0.1:0 \
     --upstream "http://127.0.0.1:$upstream_port" --admin 127.0.0.1:0 \
     --store "$store" --config "$config" --threads 1 --log-level info >"$log" 2>&1) &
  gateway_pid=$!
  pids+=($gateway_pid)
  for _ in $(seq 200); do
    started=$(grep -m1 '"msg":"idem-gateway started"' "$log" || true)
    [[ -n $started ]] && break
    sleep 0.05
  done
  [[ -n $started ]] || { tail -5 "$log" >&2; echo "run.sh: idem-gateway did not start" >&2; exit 1; }
  gateway_port=$(sed -n 's/.*"listen":"[^"]*:\([0-9]*\)".*/\1/p' <<<"$started")
  local admin
  admin=$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' <<<"$started")
  wait_http "http://$admin/healthz"
}

stop_gateway() {
  kill "$gateway_pid" 2>/dev/null || true
  wait "$gateway_pid" 2>/dev/null || true
  if [[ -n $redis_pid ]]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=
  fi
}

for round in $(seq "$rounds"); do
  run "nginx return (direct)" "$upstream_port" plain.lua
  run "nginx proxy_pass" "$proxy_port" plain.lua
  for spec in "${stores[@]}"; do
    start_gateway "$spec"
    replay_key="bench-replay-$(date +%s)-$RANDOM"
    export IDEM_BENCH_KEY=$replay_key
    curl -s -o /dev/null -X POST -H "Idempotency-Key: $replay_key" \
      -H 'Content-Type: application/json' -d '{"amount":1000,"currency":"eur"}' \
      "http://127.0.0.1:$gateway_port/payments"
    run "$spec: no key (pass-through)" "$gateway_port" plain.lua
    run "$spec: fresh keys" "$gateway_port" fresh.lua
    run "$spec: replays" "$gateway_port" replay.lua
    stop_gateway
  done
done

ratio() {  # a b: a / b
  awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b }'
}
median() {  # numbers on stdin, one per line; nothing when there are none
  sort -g | awk 'NF { v[++n] = $1 } END {
    if (n == 0) exit
    if (n % 2) printf "%.2f", v[(n + 1) / 2]; else printf "%.2f", (v[n / 2] + v[n / 2 + 1]) / 2 }'
}
over_rounds() {  # how: prints one value per round, from the round number in $1
  local how=$1 r
  for r in $(seq "$rounds"); do "$how" "$r"; echo; done | median
}
first=${stores[0]}

echo
echo "idem-gateway --threads 1; wrk -t$wrk_threads -c$connections -d$duration;" \
  "$(nproc) CPUs, $pinning.$([[ $rounds -gt 1 ]] && echo \
  " Medians of $rounds rounds; ratios are the median of each round's ratio.")"
echo
echo "| scenario | requests/s | p99 latency | vs nginx proxy_pass | vs $first | CPU $sut_cpu busy | errors |"
echo "|---|---:|---:|---:|---:|---:|---|"
rows=("nginx return (direct)" "nginx proxy_pass")
for spec in "${stores[@]}"; do
  rows+=("$spec: no key (pass-through)" "$spec: fresh keys" "$spec: replays")
done
for name in "${rows[@]}"; do
  row_rps() { printf '%s' "${rps["$name#$1"]}"; }
  row_p99() { printf '%s' "${p99["$name#$1"]}"; }
  vs_proxy() { ratio "${rps["$name#$1"]}" "${rps["nginx proxy_pass#$1"]}"; }
  vs_first() { ratio "${rps["$name#$1"]}" "${rps["$first: ${name#*: }#$1"]}"; }
  same="-"
  if [[ $name == *": "* ]]; then same=$(over_rounds vs_first); fi
  errors=0 sockets=""
  for r in $(seq "$rounds"); do
    errors=$((errors + ${non2xx["$name#$r"]:-0}))
    [[ -n ${socket_errors["$name#$r"]} ]] && sockets+="; ${socket_errors["$name#$r"]}"
  done
  row_busy() { printf '%s' "${sut_busy["$name#$1"]}"; }
  p=$(over_rounds row_p99)
  busy=$(over_rounds row_busy)
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(over_rounds row_rps)" \
    "${p:+${p}ms}" "$(over_rounds vs_proxy)" "${same:--}" "${busy:+${busy%.*}%}" \
    "$errors non-2xx$sockets"
done

if [[ $rounds -gt 1 ]]; then
  # The medians hide how far the machine drifted between rounds; this shows it.
  echo
  echo "Each round's ratios (vs nginx proxy_pass / vs $first):"
  echo
  header="| scenario |" rule="|---|"
  for r in $(seq "$rounds"); do header+=" round $r |" rule+="---:|"; done
  echo "$header"
  echo "$rule"
  for name in "${rows[@]}"; do
    [[ $name == *": "* ]] || continue
    line="| $name |"
    for r in $(seq "$rounds"); do
      line+=" $(ratio "${rps["$name#$r"]}" "${rps["nginx proxy_pass#$r"]}") /"
      line+=" $(ratio "${rps["$name#$r"]}" "${rps["$first: ${name#*: }#$r"]}") |"
    done
    echo "$line"
  done
fi
