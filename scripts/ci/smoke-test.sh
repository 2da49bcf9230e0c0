#!/usr/bin/env bash
# Smoke test: start the Zammad simulator and the service, check /healthz, send one signed
# webhook and wait until the ticket ends pdf:signed with a PDF whose signature pdfsig accepts.
#
# Usage: scripts/ci/smoke-test.sh            (from anywhere; needs `make install` done first)
#   SMOKE_TIMEOUT   seconds to wait for each stage (default 60)
#   PYTHON          interpreter (default .venv/bin/python under the repository)
#   SMOKE_KEEP=1    keep the work folder (logs, archive) for a look afterwards
#
# Exit 0 only when every check passed; every wait is bounded; the simulator and the
# service are stopped and the work folder removed on every exit.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
timeout_s="${SMOKE_TIMEOUT:-60}"
token="smoke-api-token"
secret="smoke-webhook-secret"
ticket=4711

work="$(mktemp -d "${TMPDIR:-/tmp}/archiver-smoke.XXXXXX")"
sim_pid=""
svc_pid=""

say() { printf '[smoke] %s\n' "$*"; }
fail() {
    say "FAILED: $*"
    for log in "$work/simulator.log" "$work/service.log"; do
        [[ -s $log ]] && { say "--- tail of ${log##*/}"; tail -n 20 "$log"; }
    done
    exit 1
}
cleanup() {
    local pid
    for pid in "$svc_pid" "$sim_pid"; do
        [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$svc_pid" "$sim_pid"; do
        [[ -z $pid ]] && continue
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${SMOKE_KEEP:-0} == 1 ]]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -x $py ]] || fail "no interpreter at $py (run: make install)"
mkdir -p "$work/archive"

# 1. Dev certificates (throw-away, in the work folder).
DEV_PFX_PASSWORD=changeit bash "$repo/scripts/dev/gen-dev-certs.sh" "$work/certs" >/dev/null

# 2. The simulator; it prints "LISTENING <url>" once it accepts connections.
(cd "$repo" && exec "$py" -m devtools.zammad_simulator --host 127.0.0.1 --port 0 --token "$token" \
    --seed tests/fixtures/zammad >"$work/simulator.out" 2>"$work/simulator.log") &
sim_pid=$!
sim_url=""
for _ in $(seq 1 $((timeout_s * 10))); do
    sim_url="$(sed -n 's/^LISTENING //p' "$work/simulator.out" 2>/dev/null | head -n 1)"
    [[ -n $sim_url ]] && break
    kill -0 "$sim_pid" 2>/dev/null || fail "the simulator exited"
    sleep 0.1
done
[[ -n $sim_url ]] || fail "the simulator did not start within ${timeout_s}s"
say "simulator at $sim_url"

# 3. The service on a free loopback port.
port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
(
    cd "$repo"
    unset CONFIG_PATH
    export ZAMMAD_BASE_URL="$sim_url" ZAMMAD_API_TOKEN="$token" ALLOW_INSECURE_HTTP=true \
        WEBHOOK_HMAC_SECRET="$secret" STORAGE_ROOT="$work/archive" STATE_DIR="$work/state" SIGNING_ENABLED=true \
        SIGNING_PFX_PATH="$work/certs/signer.pfx" SIGNING_PFX_PASSWORD=changeit \
        SERVER_HOST=127.0.0.1 SERVER_PORT="$port" LOG_LEVEL=INFO
    exec "$py" -m app serve
) >"$work/service.log" 2>&1 &
svc_pid=$!

# 4. /healthz answers 200 with status ok.
healthy=0
for _ in $(seq 1 $((timeout_s * 10))); do
    kill -0 "$svc_pid" 2>/dev/null || fail "the service exited"
    if body="$(curl -fsS -m 2 "$url/healthz" 2>/dev/null)" && [[ $body == *'"status":"ok"'* ]]; then
        healthy=1
        break
    fi
    sleep 0.1
done
[[ $healthy == 1 ]] || fail "/healthz did not answer within ${timeout_s}s"
say "GET /healthz → $body"

# 5. One webhook exactly as Zammad sends it (X-Hub-Signature sha1=, X-Zammad-Delivery), then wait.
"$py" - "$repo" "$url" "$sim_url" "$secret" "$ticket" "$timeout_s" "$work/archive" <<'PY' || fail "ingest"
import json, subprocess, sys, time, urllib.request
from pathlib import Path

repo, url, sim_url, secret, ticket, timeout_s, archive = sys.argv[1:]
sys.path.insert(0, repo)
from devtools.webhook import zammad_webhook

payload = json.loads(Path(repo, "tests/fixtures/zammad/webhook-default.json").read_text())
body, headers = zammad_webhook(payload, secret)
request = urllib.request.Request(f"{url}/ingest", data=body, headers=headers, method="POST")
with urllib.request.urlopen(request, timeout=10) as response:
    answer = response.read().decode()
    print(f"[smoke] POST /ingest → {response.status} {answer}")
    if response.status != 202 or '"accepted"' not in answer:
        sys.exit(1)
deadline = time.monotonic() + float(timeout_s)
while True:
    with urllib.request.urlopen(f"{sim_url}/_sim/state/{ticket}", timeout=5) as response:
        state = json.load(response)
    tags = state["tags"]
    if ("pdf:signed" in tags or "pdf:error" in tags) and "pdf:processing" not in tags and state["notes"]:
        break
    if time.monotonic() > deadline:
        print(f"[smoke] ticket {ticket} not finished after {timeout_s}s; tags {tags}")
        sys.exit(1)
    time.sleep(0.2)
print(f"[smoke] ticket tags: {', '.join(tags)}")
if "pdf:signed" not in tags:
    print(f"[smoke] last note: {state['notes'][-1]['body'][:300]}")
    sys.exit(1)
pdfs = sorted(Path(archive).rglob("*.pdf"))
if len(pdfs) != 1:
    print(f"[smoke] expected one PDF, found {len(pdfs)}")
    sys.exit(1)
print(f"[smoke] archived {pdfs[0].relative_to(archive)}")
out = subprocess.run(["pdfsig", str(pdfs[0])], capture_output=True, text=True).stdout
if "Signature is Valid." not in out or "Total document signed" not in out:
    print(out)
    sys.exit(1)
print("[smoke] pdfsig: Signature is Valid, total document signed")
PY

say "OK"
