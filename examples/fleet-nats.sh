#!/usr/bin/env bash
# A fleet of three hosts on one machine: one nats-server with JetStream, three fleet daemons
# (host ids nats-a, nats-b, nats-c, each its own state dir and event log) sharing one work
# queue and one event stream. Submits a handful of specs with `submit --nats`, shows which host
# ran each, checks one host's batches in the stream with `verify`, and stops everything.
# Run as root from the repository root after building (see README.md).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$here/../build/cellos-reactor
port=${1:-4333}
url=nats://127.0.0.1:$port
work=$(mktemp -d /var/tmp/cellos-fleet-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$work"
  for h in unified memory pids cpu; do
    for host in nats-a nats-b nats-c; do rmdir "/sys/fs/cgroup/$h/cellos/$host" 2>/dev/null; done
    rmdir "/sys/fs/cgroup/$h/cellos" 2>/dev/null
  done
  return 0
}
trap cleanup EXIT
command -v nats-server >/dev/null || { echo "nats-server is not installed (apt-get install nats-server)"; exit 1; }

echo "=== nats-server -js on $url (store $work/js)"
nats-server -js -a 127.0.0.1 -p "$port" -sd "$work/js" >"$work/nats.log" 2>&1 &
pids+=($!)
sleep 0.5

for host in nats-a nats-b nats-c; do
  mkdir -p "$work/$host"
  cat >"$work/$host/fleet.toml" <<TOML
[host]
id = "$host"
state_dir = "$work/$host/state"
max_concurrent_cells = 2
[events]
jsonl = "$work/$host/events.jsonl"
[events.nats]
url = "$url"
[intake.nats]
url = "$url"
ack_wait_seconds = 10
TOML
  echo "=== daemon $host: $bin --config $work/$host/fleet.toml"
  "$bin" --config "$work/$host/fleet.toml" 2>"$work/$host/daemon.err" &
  pids+=($!)
done
sleep 1

echo "=== submitting 9 specs with: $bin submit --nats $url SPEC.json"
for i in $(seq 1 9); do
  cat >"$work/spec-$i.json" <<JSON
{"apiVersion":"cellos.io/v1","kind":"ExecutionCell",
 "spec":{"id":"fleet-job-$i","run":{"argv":["/bin/sh","-c","echo job $i on \$(hostname); sleep 0.5"]}}}
JSON
  "$bin" submit --nats "$url" "$work/spec-$i.json" || exit 1
done

echo "=== waiting for the 9 cells"
for _ in $(seq 1 100); do
  n=$(cat "$work"/nats-*/events.jsonl 2>/dev/null | grep -c 'command.v1.completed')
  [ "$n" -ge 9 ] && break
  sleep 0.2
done

echo "=== where each spec ran (the cell's hostname is its id; the log dir says the host)"
for host in nats-a nats-b nats-c; do
  for d in "$work/$host/state/logs"/*/; do
    [ -d "$d" ] && echo "$host: $(basename "$d"): $(cat "$d/stdout")"
  done
done | sort -t: -k2

sleep 0.5
echo "=== host nats-a's batches in the stream: $bin events fetch --nats $url --subject CELLOS_EVENTS.nats-a"
"$bin" events fetch --nats "$url" --subject CELLOS_EVENTS.nats-a >"$work/nats-a.stream.jsonl"
"$bin" verify "$work/nats-a.stream.jsonl"
cmp -s "$work/nats-a.stream.jsonl" "$work/nats-a/events.jsonl" &&
  echo "the stream holds exactly nats-a's local log"

echo "=== stopping the daemons (SIGTERM) and nats-server"
