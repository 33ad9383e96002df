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
#   INSTANCES=7 bash bench/scale-nchan.sh              # 7 one-worker nginx, one target each
#
# Debian's Nchan 1.3.6 crashed (SIGSEGV/SIGABRT) with several workers under
# this load, so INSTANCES=N instead starts N nginx with one worker each on
# their own ports and runs `swarm --processes N --target a,b,…`: shard i loads
# instance i only (each within one worker's file limit).
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
mkdir -p /var/lib/nginx/body 2>/dev/null || true # Nchan needs it
INSTANCES=${INSTANCES:-}
# POLL_TIMEOUT: Nchan's nchan_subscriber_timeout (the test config's 25s): an idle
# long-poll is answered 408 and renewed that often, 4,000 requests/s at 100k users.
POLL_TIMEOUT=${POLL_TIMEOUT:-25s}
cleanup() { for f in "$work"/nginx*/nginx.pid; do [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; true; }
trap cleanup EXIT
# start_nginx DIR WORKERS [SED]: one nginx from testdata/nchan's config (with
# the extra sed expression SED, if given); prints its port.
start_nginx() {
  local d=$1 port
  mkdir -p "$d"
  port=$(free_port)
  sed -e "s#@PORT@#$port#g" -e "s#@RUN@#$d#g" -e "s#^worker_processes 1;#worker_processes $2;#" \
    -e "s#nchan_subscriber_timeout 25s;#nchan_subscriber_timeout $POLL_TIMEOUT;#" \
    ${3:+-e "$3"} "$here/testdata/nchan/nginx.conf.in" >"$d/nginx.conf"
  nginx -c "$d/nginx.conf" -p "$d" >"$d/out" 2>&1
  wait_port "$port"
  echo "$port"
}
build_swarm
last=$((SOURCES + 1))
if [ -n "$INSTANCES" ]; then
  targets=
  for i in $(seq 1 "$INSTANCES"); do
    port=$(start_nginx "$work/nginx$i" 1)
    targets=${targets:+$targets,}http://127.0.0.1:$port
  done
  echo "scale: $USERS $VIA users against $INSTANCES one-worker Nchans ($targets), sources 127.0.0.2-127.0.0.$last; work dir $work"
  run_swarm --processes "$INSTANCES" --target "$targets" --subscribe-via "$VIA" --source-addrs "127.0.0.2-127.0.0.$last"
else
  port=$(start_nginx "$work/nginx" "$WORKERS" "s#backlog=4096;#backlog=4096 reuseport;#")
  echo "scale: $USERS $VIA users against Nchan http://127.0.0.1:$port ($WORKERS workers), sources 127.0.0.2-127.0.0.$last; work dir $work"
  run_swarm --processes auto --target "http://127.0.0.1:$port" --subscribe-via "$VIA" \
    --source-addrs "127.0.0.2-127.0.0.$last"
fi
for f in "$work"/nginx*/nginx.pid; do
  for p in $(pgrep -f "nginx: worker" -P "$(cat "$f")" 2>/dev/null); do
    echo "scale: nginx worker $p peak RSS $(awk '/VmHWM/{print $2" "$3}' /proc/$p/status 2>/dev/null)"
  done
  grep -c "exited on signal" "$(dirname "$f")/error.log" 2>/dev/null | sed "s#^#scale: worker crashes in $(dirname "$f"): #" || true
done
scale_summary
