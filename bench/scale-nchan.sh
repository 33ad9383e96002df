#!/usr/bin/env bash
# bench/scale-nchan.sh: a long-poll (or WebSocket / EventSource) swarm past one
# process's file limit against one Nchan with several workers (each worker
# has its own file limit; `reuseport` spreads the connections over them):
# testdata/nchan's config with WORKERS workers on a free loopback port,
# stopped by PID on exit, and `swarm --processes auto` with its connections
# spread over source addresses 127.0.0.2….
#
#   bash bench/scale-nchan.sh                          # 100,000 long-poll users
#   VIA=websocket USERS=50000 bash bench/scale-nchan.sh
#   INTERRUPT_AFTER=300 bash bench/scale-nchan.sh      # SIGINT with every user active
#
# Prints the same summary line as bench/scale-mqtt.sh. Loopback only.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
USERS=${USERS:-100000}
WORKERS=${WORKERS:-8}
SOURCES=${SOURCES:-6}
VIA=${VIA:-longpoll}
SPAWN=${SPAWN:-500}
DURATION=${DURATION:-300s}
INTERVAL=${INTERVAL:-30s-60s}
ITEMS=${ITEMS:-3}
INTERRUPT_AFTER=${INTERRUPT_AFTER:-}
command -v nginx >/dev/null || { echo "scale: nginx not found (apt-get install nginx libnginx-mod-nchan)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "scale: /usr/bin/time not found (apt-get install time)" >&2; exit 2; }

work=$(mktemp -d /tmp/eventswarm-scale.XXXXXX)
mkdir -p "$work/nginx" /var/lib/nginx/body 2>/dev/null || mkdir -p "$work/nginx"
cleanup() { [ -s "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s#@PORT@#$port#g" -e "s#@RUN@#$work/nginx#g" -e "s#^worker_processes 1;#worker_processes $WORKERS;#" \
  -e "s#backlog=4096;#backlog=4096 reuseport;#" "$here/testdata/nchan/nginx.conf.in" >"$work/nginx/nginx.conf"
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" >"$work/nginx/out" 2>&1
for _ in $(seq 1 50); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; then break; fi
  sleep 0.1
done
(cd "$here" && go build -o "$work/swarm" ./cmd/swarm)
last=$((SOURCES + 1))
echo "scale: $USERS $VIA users against Nchan http://127.0.0.1:$port ($WORKERS workers), sources 127.0.0.2-127.0.0.$last; work dir $work"
/usr/bin/time -v "$work/swarm" --processes auto --target "http://127.0.0.1:$port" --subscribe-via "$VIA" \
  --source-addrs "127.0.0.2-127.0.0.$last" --users "$USERS" --spawn-rate "$SPAWN" --duration "$DURATION" \
  --learner-interval "$INTERVAL" --items "$ITEMS" --control-interval 20s-40s --live 15s --json "$work/run.json" \
  2> >(tee "$work/stderr" >&2) &
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
for p in $(pgrep -f "nginx: worker" -P "$(cat "$work/nginx/nginx.pid")" 2>/dev/null); do
  echo "scale: nginx worker $p peak RSS $(awk '/VmHWM/{print $2" "$3}' /proc/$p/status 2>/dev/null)"
done
python3 "$here/bench/summary.py" "$work/run.json" "$work/stderr" "$rc"
