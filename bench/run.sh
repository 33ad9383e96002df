#!/usr/bin/env bash
# bench/run.sh: eventswarm's MQTT generator cost side by side with its peers
# and a bare-client baseline, on one Mosquitto of its own (a free loopback
# port, stopped on exit).
#
#   bash bench/run.sh                       # eventswarm probe + the bare baseline
#   PEER_MQTT_STRESSER=../shared/peers/mqtt-stresser \
#   PEER_MQTT_BENCHMARK=../shared/peers/mqtt-benchmark bash bench/run.sh
#
# Environment: QOS (default "0 1"), COUNT messages per run (default 300000),
# RATE per stream for probe (default 1000; 10 streams → 10k msg/s),
# LINGER for probe's --mqtt-linger (default 1ms), PAYLOAD bytes (default 128).
# For each tool and QoS it prints generator user+sys CPU-seconds per 1M
# delivered messages, delivered msg/s and peak RSS (from /usr/bin/time -v), and
# eventswarm's CPU ratio to each. Peers are run only when their path is given.
# The machine may be shared: CPU-seconds per message is what to compare.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/lib.sh"
QOS=${QOS:-"0 1"}
COUNT=${COUNT:-300000}
RATE=${RATE:-1000}
LINGER=${LINGER:-1ms}
PAYLOAD=${PAYLOAD:-128}
STREAMS=10
command -v mosquitto >/dev/null || { echo "bench: mosquitto not found (apt-get install mosquitto)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time not found (apt-get install time)" >&2; exit 2; }

work=$(mktemp -d /tmp/eventswarm-bench.XXXXXX)
mpid=
cleanup() { [ -n "$mpid" ] && kill "$mpid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(free_port)
plain_mosquitto_conf "$port" "$work" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.out" 2>&1 &
mpid=$!
for _ in $(seq 1 50); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; then break; fi
  sleep 0.1
done
broker=127.0.0.1:$port
(cd "$here" && go build -o "$work/probe" ./cmd/probe && go build -o "$work/bare" ./bench/bare)

# measure NAME QOS DELIVERED_CMD... : runs the command under /usr/bin/time and
# appends "name qos cpu_per_1M msg_per_s rss_kb" to $work/rows. The command's
# stdout goes to $work/NAME.out; DELIVERED is computed by deliveredOf.
rows=$work/rows
: >"$rows"
record() { # name qos delivered seconds timefile
  python3 - "$@" >>"$rows" <<'PY'
import re, sys
name, qos, delivered, secs, tf = sys.argv[1:6]
t = open(tf).read()
u = float(re.search(r'User time \(seconds\): ([\d.]+)', t).group(1))
s = float(re.search(r'System time \(seconds\): ([\d.]+)', t).group(1))
rss = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', t).group(1))
d = int(delivered); secs = float(secs)
cpu = (u + s) / d * 1e6 if d else float('nan')
print(f"{name}\t{qos}\t{cpu:.2f}\t{d / secs if secs else 0:.0f}\t{rss}\t{d}")
PY
}

for q in $QOS; do
  # eventswarm probe: 10 streams × 1 subscriber, paced: as it runs by
  # default (--procs auto: one scheduler thread at this load, since idle
  # threads' spinning and polling were ~40% of its CPU at QoS 1), and with
  # Go's default thread count (--procs 0).
  dur=$(python3 -c "print(max(5, round($COUNT / ($RATE * $STREAMS))))")
  for procs in auto 0; do
    name=eventswarm-probe; [ "$procs" = auto ] || name=eventswarm-probe-procs=$procs
    /usr/bin/time -v "$work/probe" --target "mqtt://$broker" --qos "$q" --rate "$RATE" --procs "$procs" \
      --streams $STREAMS --subscribers 1 --payload-size "$PAYLOAD" --duration "${dur}s" --mqtt-linger "$LINGER" --quiet \
      --json "$work/$name.json" >"$work/$name.out" 2>"$work/$name.time" || true
    d=$(python3 -c "import json; c=json.load(open('$work/$name.json'))['counts']; print(c['on_time']+c['slow'])")
    record "$name" "$q" "$d" "$dur" "$work/$name.time"
  done

  # bare: unpaced, pipelined (the limit).
  /usr/bin/time -v "$work/bare" -broker "$broker" -qos "$q" -count "$COUNT" -size "$PAYLOAD" \
    >"$work/bare.out" 2>"$work/bare.time" || true
  read -r d s < <(sed -n 's/^delivered=\([0-9]*\) seconds=\([0-9.]*\)$/\1 \2/p' "$work/bare.out")
  record "bare-client" "$q" "${d:-0}" "${s:-0}" "$work/bare.time"

  if [ -n "${PEER_MQTT_STRESSER:-}" ]; then
    per=$((COUNT / 10))
    start=$(date +%s.%N)
    /usr/bin/time -v "$PEER_MQTT_STRESSER" -broker "tcp://$broker" -num-clients 10 -num-messages "$per" \
      -publisher-qos "$q" -subscriber-qos "$q" -no-progress -timeout 60s -global-timeout 300s \
      >"$work/stresser.out" 2>"$work/stresser.time" || true
    secs=$(python3 -c "import time; print(time.time() - $start)")
    # each of its 10 clients receives its own messages back
    record "mqtt-stresser" "$q" "$((per * 10))" "$secs" "$work/stresser.time"
  fi
  if [ -n "${PEER_MQTT_BENCHMARK:-}" ] && ! command -v mosquitto_sub >/dev/null; then
    echo "bench: mqtt-benchmark needs mosquitto_sub as its subscriber (apt-get install mosquitto-clients); skipped" >&2
  fi
  if [ -n "${PEER_MQTT_BENCHMARK:-}" ] && command -v mosquitto_sub >/dev/null; then
    per=$((COUNT / 10))
    /usr/bin/time -v mosquitto_sub -h 127.0.0.1 -p "$port" -t bench/mb -q "$q" -C "$COUNT" -W 300 -F x \
      >"$work/sub.out" 2>"$work/sub.time" &
    spid=$!
    sleep 0.5
    start=$(date +%s.%N)
    /usr/bin/time -v "$PEER_MQTT_BENCHMARK" -broker "tcp://$broker" -topic bench/mb -clients 10 -count "$per" \
      -qos "$q" -size "$PAYLOAD" -message-interval 0 -quiet >"$work/mb.out" 2>"$work/mb.time" || true
    wait "$spid" || true
    secs=$(python3 -c "import time; print(time.time() - $start)")
    got=$(wc -l <"$work/sub.out")
    # generator = publisher + subscriber: add their CPU
    python3 - "$work/mb.time" "$work/sub.time" >"$work/mbsub.time" <<'PY'
import re, sys
u = s = 0.0; rss = 0
for f in sys.argv[1:]:
    t = open(f).read()
    u += float(re.search(r'User time \(seconds\): ([\d.]+)', t).group(1))
    s += float(re.search(r'System time \(seconds\): ([\d.]+)', t).group(1))
    rss += int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', t).group(1))
print(f"User time (seconds): {u}\nSystem time (seconds): {s}\nMaximum resident set size (kbytes): {rss}")
PY
    record "mqtt-benchmark+mosquitto_sub" "$q" "$got" "$secs" "$work/mbsub.time"
  fi
done

python3 - "$rows" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
es = {r[1]: float(r[2]) for r in rows if r[0] == "eventswarm-probe"}
print(f"{'tool':30} {'qos':>3} {'CPU-s/1M':>9} {'msg/s':>8} {'peak RSS':>9} {'delivered':>10} {'eventswarm/x':>12}")
for name, q, cpu, rate, rss, d in rows:
    ratio = es.get(q, float('nan')) / float(cpu) if float(cpu) > 0 else float('nan')
    print(f"{name:30} {q:>3} {float(cpu):9.2f} {int(rate):8d} {int(rss)//1024:7d}MB {int(d):10d} {ratio:12.2f}")
PY
