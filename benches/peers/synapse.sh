#!/usr/bin/env bash
# Perch beside Matrix Synapse under the same 50-client posting load, in one run.
#
# Installs Synapse from PyPI into a virtual environment (once, under
# ${PERCH_PEERS_DIR:-~/.cache/perch-peers}), configures a throwaway homeserver on loopback
# (SQLite, open registration, rate limits lifted so that they do not decide the figure, no
# federation or key servers), starts it, runs `cargo bench --bench peers` against it and Perch,
# and stops it. Not in CI: it downloads Synapse. Extra arguments go to `cargo bench`.
#
#   bash benches/peers/synapse.sh
#   SYNAPSE_VERSION=1.163.2 PERCH_PEERS_MESSAGES=3000 bash benches/peers/synapse.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

version="${SYNAPSE_VERSION:-1.163.2}"
home="${PERCH_PEERS_DIR:-$HOME/.cache/perch-peers}"
venv="$home/venv-$version"
if [ ! -x "$venv/bin/synctl" ]; then
    echo "installing matrix-synapse==$version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "matrix-synapse==$version"
fi

data="$(mktemp -d)"
synapse_pid=""
stop() {
    if [ -n "$synapse_pid" ]; then
        kill "$synapse_pid" 2>/dev/null || true
        wait "$synapse_pid" 2>/dev/null || true
    fi
    rm -rf "$data"
}
trap stop EXIT

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# In its data directory too: generating the configuration already writes homeserver.log
# to the working directory.
(cd "$data" && "$venv/bin/python" -m synapse.app.homeserver --server-name localhost \
    --config-path "$data/homeserver.yaml" --data-directory "$data" \
    --generate-config --report-stats=no >/dev/null)
"$venv/bin/python" - "$data/homeserver.yaml" "$port" <<'PY'
import sys, yaml
path, port = sys.argv[1], int(sys.argv[2])
config = yaml.safe_load(open(path))
unlimited = {"per_second": 1000000, "burst_count": 1000000}
config.update({
    "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
                   "tls": False, "x_forwarded": False,
                   "resources": [{"names": ["client"], "compress": False}]}],
    "enable_registration": True,
    "enable_registration_without_verification": True,
    "rc_message": unlimited,
    "rc_registration": unlimited,
    "rc_login": {"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
    "rc_joins": {"local": unlimited, "remote": unlimited},
    "rc_joins_per_room": unlimited,
    "presence": {"enabled": False},
    "trusted_key_servers": [],
    "suppress_key_server_warning": True,
    "report_stats": False,
})
yaml.safe_dump(config, open(path, "w"))
PY
# From its data directory: its generated log configuration writes homeserver.log there.
(cd "$data" && exec "$venv/bin/python" -m synapse.app.homeserver -c homeserver.yaml) \
    >"$data/synapse.out" 2>&1 &
synapse_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
    if curl -fs "$base/health" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$synapse_pid" 2>/dev/null; then
        echo "Synapse did not start:" >&2
        tail -20 "$data/synapse.out" >&2
        exit 1
    fi
    sleep 0.5
done
curl -fs "$base/health" >/dev/null || { echo "Synapse did not answer on $base" >&2; exit 1; }
echo "Synapse $version on $base (pid $synapse_pid); load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
PERCH_PEERS_SYNAPSE="$base" PERCH_PEERS_SYNAPSE_VERSION="$version" \
    cargo bench --bench peers "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
