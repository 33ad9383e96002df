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
. "$here/bench/lib.sh"
need nginx "apt-get install nginx libnginx-mod-nchan"
scale_setup
mkdir -p "$work/nginx" /var/lib/nginx/body 2>/dev/null || mkdir -p "$work/nginx"
cleanup() { [ -s "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true; }
trap cleanup EXIT
port=$(free_port)
sed -e "s#@PORT@#$port#g" -e "s#@RUN@#$work/nginx#g" -e "s#^worker_processes 1;#worker_processes $WORKERS;#" \
  -e "s#backlog=4096;#backlog=4096 reuseport;#" "$here/testdata/nchan/nginx.conf.in" >"$work/nginx/nginx.conf"
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" >"$work/nginx/out" 2>&1
wait_port "$port"
build_swarm
last=$((SOURCES + 1))
echo "scale: $USERS $VIA users against Nchan http://127.0.0.1:$port ($WORKERS workers), sources 127.0.0.2-127.0.0.$last; work dir $work"
run_swarm --processes auto --target "http://127.0.0.1:$port" --subscribe-via "$VIA" \
  --source-addrs "127.0.0.2-127.0.0.$last"
for p in $(pgrep -f "nginx: worker" -P "$(cat "$work/nginx/nginx.pid")" 2>/dev/null); do
  echo "scale: nginx worker $p peak RSS $(awk '/VmHWM/{print $2" "$3}' /proc/$p/status 2>/dev/null)"
done
scale_summary
