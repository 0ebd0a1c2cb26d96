#!/usr/bin/env bash
# The demo: starts a fleet daemon on a throwaway state dir, submits every example spec to it,
# shows `status` while they run, then each cell's logs and events, the metrics, and a clean
# SIGTERM stop. Run as root from the repository root, after building (see README.md).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${CELLOS_REACTOR:-$here/../build/cellos-reactor}
state=$(mktemp -d /var/tmp/cellos-demo-XXXXXX)
daemon=
# The demo's host is its own: stop its daemon, remove its state and the host's cgroup parents.
cleanup() {
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
    kill -TERM "$daemon"; sleep 1; kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null
  fi
  rm -rf "$state"
  for h in unified memory pids cpu; do
    rmdir "/sys/fs/cgroup/$h/cellos/demo-host" "/sys/fs/cgroup/$h/cellos" 2>/dev/null
  done
  return 0
}
trap cleanup EXIT
mkdir -p "$state/secrets"
printf 'demo-secret-value\n' > "$state/secrets/DEMO_TOKEN"
# The demo signs its event log: a fresh host key, and signing_key turned on.
"$bin" keygen --out "$state/keys" >/dev/null || exit 1
sed -e "s|/var/lib/cellos-reactor/demo|$state|g" \
    -e "s|^# signing_key = .*|signing_key = \"$state/keys/host.key\"|" \
    "$here/fleet.toml" > "$state/fleet.toml"

echo "=== starting the fleet daemon: $bin --config $state/fleet.toml"
"$bin" --config "$state/fleet.toml" 2> >(sed 's/^/  daemon | /' >&2) &
daemon=$!
for _ in $(seq 100); do [ -S "$state/reactor.sock" ] && break; sleep 0.1; done
[ -S "$state/reactor.sock" ] || { echo "the daemon did not start"; exit 1; }

specs=("$here"/0*.json)
for spec in "${specs[@]}"; do
  printf '=== submit %-24s -> ' "$(basename "$spec")"
  "$bin" submit "$spec" --config "$state/fleet.toml" | sed "s|$state/||"
done
sleep 0.5
echo "=== cellos-reactor status"
"$bin" status --config "$state/fleet.toml" | sed 's/^/  /'

# Every cell ends with a destroyed event.
for _ in $(seq 300); do
  n=$(grep -c '"dev.cellos.events.cell.lifecycle.v1.destroyed"' "$state/events.jsonl" 2>/dev/null)
  [ "${n:-0}" -ge "${#specs[@]}" ] && break
  sleep 0.1
done
for spec in "${specs[@]}"; do
  id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["spec"]["id"])' "$spec")
  echo "=== $id: logs/$id/stdout and stderr"
  cat "$state/logs/$id/stdout" "$state/logs/$id/stderr" 2>/dev/null | sed 's/^/  | /'
done

echo "=== SIGTERM: the daemon stops intake, lets cells finish, and exits"
kill -TERM "$daemon"; wait "$daemon"; echo "  daemon exit status: $?"; daemon=
echo "=== events ($state/events.jsonl)"
python3 - "$state/events.jsonl" <<'PY' 2>/dev/null || cat "$state/events.jsonl"
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if ".events.log." in e["type"]:
        continue  # the log's own batch manifests: `verify` checks them below
    d = e.get("data", {})
    kind = e["type"].split(".events.")[1]
    extra = {k: v for k, v in d.items() if k in ("reason", "exitCode", "signal", "outcome", "terminalState", "durationMs")}
    print(f'  {e.get("subject", "-"):<16} {kind:<40} {extra}')
PY
echo "=== cellos-reactor verify events.jsonl --public-key keys/host.pub"
"$bin" verify "$state/events.jsonl" --public-key "$state/keys/host.pub" 2>&1 | sed 's/^/  /' || { echo "verify failed"; exit 1; }
echo "=== metrics.prom (node_exporter textfile format)"
grep -v '^#' "$state/metrics.prom" | grep -v '_bucket' | sed 's/^/  /'
grep -q demo-secret-value "$state/events.jsonl" "$state"/logs/*/* && echo "SECRET LEAKED" && exit 1
echo "(the secret's value appears in no event and no log)"
