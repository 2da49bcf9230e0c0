#!/usr/bin/env bash
# Run the service locally against the Zammad simulator with the dev certificates, like
# `make demo`, but stay up until Ctrl-C so you can send webhooks by hand.
#
# Usage: scripts/dev/run-local.sh            (needs `make install` done first)
#   PORT=8080      the service's port (127.0.0.1 only); SIM_PORT=8081 the simulator's
#   PYTHON         interpreter (default .venv/bin/python under the repository)
#
# Uses var/dev-certs (made by scripts/dev/gen-dev-certs.sh), archives into var/local-archive,
# logs into var/local-service.log and var/local-simulator.log. Prints how to send the
# fixture webhook and where to look. Ctrl-C (or SIGTERM) stops both processes.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
port="${PORT:-8080}"
sim_port="${SIM_PORT:-8081}"
token="local-api-token"
secret="local-webhook-secret"
var="$repo/var"
sim_pid=""
svc_pid=""

say() { printf '[run-local] %s\n' "$*"; }
cleanup() {
    trap - EXIT INT TERM
    say "stopping"
    local pid
    for pid in "$svc_pid" "$sim_pid"; do [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$svc_pid" "$sim_pid"; do [[ -n $pid ]] && wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -x $py ]] || { say "no interpreter at $py (run: make install)"; exit 1; }
mkdir -p "$var/local-archive"
DEV_PFX_PASSWORD=changeit bash "$repo/scripts/dev/gen-dev-certs.sh" "$var/dev-certs" >/dev/null

# Emptied here, before the simulator starts: its own redirection may come after the first read
# below, which would then find the previous run's LISTENING line.
: >"$var/local-simulator.out"
(cd "$repo" && exec "$py" -m devtools.zammad_simulator --host 127.0.0.1 --port "$sim_port" \
    --token "$token" --seed tests/fixtures/zammad >"$var/local-simulator.out" 2>"$var/local-simulator.log") &
sim_pid=$!
for _ in $(seq 1 300); do
    grep -q '^LISTENING ' "$var/local-simulator.out" 2>/dev/null && break
    kill -0 "$sim_pid" 2>/dev/null || { say "the simulator exited; see var/local-simulator.log"; exit 1; }
    sleep 0.1
done
sim_url="$(sed -n 's/^LISTENING //p' "$var/local-simulator.out" | head -n 1)"
[[ -n $sim_url ]] || { say "the simulator did not start within 30 s"; exit 1; }

(
    cd "$repo"
    unset CONFIG_PATH
    export ZAMMAD_BASE_URL="$sim_url" ZAMMAD_API_TOKEN="$token" ALLOW_INSECURE_HTTP=true \
        WEBHOOK_HMAC_SECRET="$secret" ADMIN_BEARER_TOKEN="local-admin-token" \
        STORAGE_ROOT="$var/local-archive" STATE_DIR="$var/local-state" SIGNING_ENABLED=true \
        SIGNING_PFX_PATH="$var/dev-certs/signer.pfx" SIGNING_PFX_PASSWORD=changeit \
        SERVER_HOST=127.0.0.1 SERVER_PORT="$port" LOG_LEVEL="${LOG_LEVEL:-INFO}"
    exec "$py" -m app serve
) >"$var/local-service.log" 2>&1 &
svc_pid=$!
for _ in $(seq 1 300); do
    curl -fsS -m 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$svc_pid" 2>/dev/null || { say "the service exited; see var/local-service.log"; exit 1; }
    sleep 0.1
done
curl -fsS -m 2 "http://127.0.0.1:$port/healthz" >/dev/null || { say "no /healthz within 30 s"; exit 1; }

cat <<EOF
[run-local] simulator  $sim_url  (token $token; ticket 4711; state: curl -s $sim_url/_sim/state/4711)
[run-local] service    http://127.0.0.1:$port  (log: var/local-service.log)
[run-local] archive    var/local-archive
[run-local] send the fixture webhook (HMAC secret $secret):
    $py -c 'import json,sys,urllib.request; sys.path.insert(0,"$repo"); from devtools.webhook import zammad_webhook; b,h=zammad_webhook(json.load(open("$repo/tests/fixtures/zammad/webhook-default.json")),"$secret"); print(urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:$port/ingest",data=b,headers=h,method="POST")).read().decode())'
[run-local] job status:  curl -s -H 'Authorization: Bearer local-admin-token' http://127.0.0.1:$port/jobs/4711
[run-local] re-archive:  curl -s -X POST -H 'Authorization: Bearer local-admin-token' 'http://127.0.0.1:$port/retry/4711?force=true'
[run-local] Ctrl-C stops both.
EOF

# Wait until either process ends (or Ctrl-C).
while kill -0 "$svc_pid" 2>/dev/null && kill -0 "$sim_pid" 2>/dev/null; do sleep 1; done
say "stopped: Ctrl-C, or a process ended (logs: var/local-service.log, var/local-simulator.log)"
exit 1
