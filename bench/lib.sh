# bench/lib.sh: what bench/run.sh, bench/scale-mqtt.sh and bench/scale-nchan.sh share.
# Sourced, not run, after `set -euo pipefail` and with here= the checkout.
# The swarm run reads USERS, SPAWN, DURATION, INTERVAL, ITEMS and
# INTERRUPT_AFTER; it sets work (the work dir), spid and rc.

# need CMD HINT: exit 2 unless CMD is on PATH (HINT: how to install it).
need() {
  command -v "$1" >/dev/null || { echo "scale: $1 not found ($2)" >&2; exit 2; }
}

# scale_setup: checks for /usr/bin/time and makes the work dir.
scale_setup() {
  [ -x /usr/bin/time ] || { echo "scale: /usr/bin/time not found (apt-get install time)" >&2; exit 2; }
  work=$(mktemp -d /tmp/eventswarm-scale.XXXXXX)
}

# free_port: a free loopback port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# plain_mosquitto_conf PORT DIR: testdata/mosquitto's config on PORT with its
# state in DIR, the plain TCP listener only (the websockets listeners, plain and
# TLS, are left out: they need ports and a certificate .ci/services makes), no
# pid file.
plain_mosquitto_conf() {
  sed -e "s#@PORT@#$1#g" -e "s#@RUN@#$2#g" -e "s#@USER@#$(id -un)#g" \
    "$here/testdata/mosquitto/mosquitto.conf.in" | sed -e '/^listener @WSPORT@/,/^keyfile @TLS@/d' | grep -v '^pid_file'
}

# wait_port PORT: waits (at most about 5 s) until 127.0.0.1:PORT accepts.
wait_port() {
  for _ in $(seq 1 50); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; then break; fi
    sleep 0.1
  done
}

# build_swarm: builds cmd/swarm into the work dir.
build_swarm() {
  (cd "$here" && go build -o "$work/swarm" ./cmd/swarm)
}

# run_swarm ARGS...: runs swarm under /usr/bin/time -v with ARGS and the
# shared load flags, its stderr copied to $work/stderr and its merged JSON to
# $work/run.json; with INTERRUPT_AFTER, sends swarm SIGINT after that many
# seconds and says how long the stop took. Sets rc to swarm's exit code.
run_swarm() {
  /usr/bin/time -v "$work/swarm" "$@" --users "$USERS" --spawn-rate "$SPAWN" --duration "$DURATION" \
    --learner-interval "$INTERVAL" --items "$ITEMS" --control-interval 20s-40s --live 15s --json "$work/run.json" \
    2> >(tee "$work/stderr" >&2) &
  spid=$!
  local t0
  if [ -n "$INTERRUPT_AFTER" ]; then
    sleep "$INTERRUPT_AFTER"
    t0=$(date +%s.%N)
    kill -INT "$(pgrep -P "$spid" -f "$work/swarm" | head -1)"
  fi
  rc=0; wait "$spid" || rc=$?
  if [ -n "$INTERRUPT_AFTER" ]; then
    echo "scale: SIGINT to exit took $(python3 -c "print(round($(date +%s.%N)-$t0,2))") s (including writing the merged report)"
  fi
}

# scale_summary: bench/summary.py's line for the run.
scale_summary() {
  python3 "$here/bench/summary.py" "$work/run.json" "$work/stderr" "$rc"
}
