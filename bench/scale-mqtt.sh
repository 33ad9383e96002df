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
command -v mosquitto >/dev/null || { echo "scale: mosquitto not found (apt-get install mosquitto)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "scale: /usr/bin/time not found (apt-get install time)" >&2; exit 2; }

work=$(mktemp -d /tmp/eventswarm-scale.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

targets=()
for i in $(seq 1 "$BROKERS"); do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$work/b$i"
  sed -e "s#@PORT@#$port#g" -e "s#@RUN@#$work/b$i#g" -e "s#@USER@#$(id -un)#g" \
    "$here/testdata/mosquitto/mosquitto.conf.in" | sed -e '/^listener @WSPORT@/,/^protocol websockets/d' | grep -v '^pid_file' >"$work/b$i/mosquitto.conf"
  mosquitto -c "$work/b$i/mosquitto.conf" >"$work/b$i/out" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; then break; fi
    sleep 0.1
  done
  targets+=("mqtt://127.0.0.1:$port")
done
(cd "$here" && go build -o "$work/swarm" ./cmd/swarm)
tlist=$(IFS=,; echo "${targets[*]}")
last=$((BROKERS + 1))
echo "scale: $USERS users over $BROKERS brokers ($tlist), sources 127.0.0.2-127.0.0.$last"
/usr/bin/time -v "$work/swarm" --processes "$BROKERS" --target "$tlist" --source-addrs "127.0.0.2-127.0.0.$last" \
  --users "$USERS" --spawn-rate "$SPAWN" --duration "$DURATION" --learner-interval "$INTERVAL" --items "$ITEMS" \
  --control-interval 20s-40s --live 15s --json "$work/run.json" 2> >(tee "$work/stderr" >&2) &
spid=$!
if [ -n "$INTERRUPT_AFTER" ]; then
  sleep "$INTERRUPT_AFTER"
  t0=$(date +%s.%N)
  kill -INT "$(pgrep -P "$spid" -f "$work/swarm" | head -1)"
fi
rc=0; wait "$spid" || rc=$?
if [ -n "$INTERRUPT_AFTER" ]; then
  echo "scale: SIGINT to exit took $(python3 -c "print(round($(date +%s.%N)-$t0,2))") s (including writing the merged report)"
fi
for p in "${pids[@]}"; do echo "scale: broker pid $p RSS $(awk '/VmHWM/{print $2" "$3}' /proc/$p/status 2>/dev/null)"; done
python3 "$here/bench/summary.py" "$work/run.json" "$work/stderr" "$rc"
