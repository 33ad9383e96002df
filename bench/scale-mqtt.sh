#!/usr/bin/env bash
# bench/scale-mqtt.sh: the largest MQTT swarm this machine holds, past one
# broker's file limit: K Mosquitto instances (testdata/mosquitto's config, each
# on a free loopback port, stopped by PID on exit) as K targets of one
# `swarm --processes K` run (child i targets broker i), connections spread
# over source addresses 127.0.0.2…
#
#   bash bench/scale-mqtt.sh                      # 3 brokers, 50,000 users
#   BROKERS=2 USERS=30000 DURATION=60s bash bench/scale-mqtt.sh
#   INTERRUPT_AFTER=90 bash bench/scale-mqtt.sh   # SIGINT with every user active
#
# It prints swarm's merged table and, from /usr/bin/time -v and the merged
# JSON: the verdict, users reached and when, lost and duplicates, CPU-seconds
# (swarm's process tree) per 1,000 messages, peak RSS of the parent (the
# children's own peaks are in their stderr lines) and, with INTERRUPT_AFTER,
# how long the stop took. Loopback only.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BROKERS=${BROKERS:-3}
USERS=${USERS:-50000}
SPAWN=${SPAWN:-1000}
DURATION=${DURATION:-120s}
INTERVAL=${INTERVAL:-30s-60s}
ITEMS=${ITEMS:-3}
INTERRUPT_AFTER=${INTERRUPT_AFTER:-}
. "$here/bench/lib.sh"
need mosquitto "apt-get install mosquitto"
scale_setup
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

targets=()
for i in $(seq 1 "$BROKERS"); do
  port=$(free_port)
  mkdir -p "$work/b$i"
  plain_mosquitto_conf "$port" "$work/b$i" >"$work/b$i/mosquitto.conf"
  mosquitto -c "$work/b$i/mosquitto.conf" >"$work/b$i/out" 2>&1 &
  pids+=($!)
  wait_port "$port"
  targets+=("mqtt://127.0.0.1:$port")
done
build_swarm
tlist=$(IFS=,; echo "${targets[*]}")
last=$((BROKERS + 1))
echo "scale: $USERS users over $BROKERS brokers ($tlist), sources 127.0.0.2-127.0.0.$last"
run_swarm --processes "$BROKERS" --target "$tlist" --source-addrs "127.0.0.2-127.0.0.$last"
for p in "${pids[@]}"; do echo "scale: broker pid $p RSS $(awk '/VmHWM/{print $2" "$3}' /proc/$p/status 2>/dev/null)"; done
scale_summary
