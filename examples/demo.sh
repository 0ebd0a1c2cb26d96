#!/usr/bin/env bash
# The demo: runs each example spec through `cellos-reactor run` and shows what the cell saw,
# its exit status and the events it produced. Run as root from the repository root, after
# building (see README.md).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${CELLOS_REACTOR:-$here/../build/cellos-reactor}
state=$(mktemp -d /var/tmp/cellos-demo-XXXXXX)
# The demo's host is its own: remove its state and the cgroup parents `run` keeps for a host.
cleanup() {
  rm -rf "$state"
  for h in unified memory pids cpu; do
    rmdir "/sys/fs/cgroup/$h/cellos/demo-host" "/sys/fs/cgroup/$h/cellos" 2>/dev/null
  done
  return 0
}
trap cleanup EXIT
mkdir -p "$state/secrets"
printf 'demo-secret-value\n' > "$state/secrets/DEMO_TOKEN"
sed -e "s|/var/lib/cellos-reactor/demo|$state|g" "$here/fleet.toml" > "$state/fleet.toml"

for spec in "$here"/0*.json; do
  echo "=== $(basename "$spec")"
  "$bin" run "$spec" --config "$state/fleet.toml" 2>&1 | sed 's/^/  | /'
  echo "  exit status: ${PIPESTATUS[0]}"
done
echo "=== events ($state/events.jsonl)"
python3 - "$state/events.jsonl" <<'PY' 2>/dev/null || cat "$state/events.jsonl"
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    d = e["data"]
    extra = {k: v for k, v in d.items() if k in ("reason", "exitCode", "signal", "outcome", "terminalState", "durationMs")}
    print(f'  {e["subject"]:<16} {e["type"].split("events.cell.")[1]:<40} {extra}')
PY
grep -q demo-secret-value "$state/events.jsonl" && echo "SECRET LEAKED INTO EVENTS" && exit 1
echo "(the secret's value appears in no event)"
