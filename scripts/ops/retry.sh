#!/usr/bin/env bash
# Queue an explicit archive retry for one ticket: POST /retry/TICKET_ID, signed.
#
# Usage: scripts/ops/retry.sh TICKET_ID [--force]
# One ticket per call; anything else on the command line is a usage error (exit 2).
#
# Environment:
#   ARCHIVER_URL          base URL of the service (default http://127.0.0.1:8080)
#   ADMIN_BEARER_TOKEN    when set, sent as "Authorization: Bearer …"
#   WEBHOOK_HMAC_SECRET   otherwise the body {"ticket_id": N, "requested_at": <now>} (plus
#                         "force": true with --force) is signed with it (X-Hub-Signature:
#                         sha1=…); valid for 5 minutes
# --force re-archives a ticket that is already pdf:signed.
# Secrets are read from the environment and never put on a command line.
#
# Exit status: 0 accepted (the answer on stdout); 1 the service answered an HTTP error (its
# answer on stderr) or could not be reached; 2 usage or set-up error (the command line, no
# ADMIN_BEARER_TOKEN and no WEBHOOK_HMAC_SECRET, an ARCHIVER_URL that is no http(s) URL).
set -euo pipefail

usage_error() {
    echo "$0: $1" >&2
    echo "usage: $0 TICKET_ID [--force]" >&2
    exit 2
}
ticket_id=""
query=""
force=0
for arg in "$@"; do
    if [[ "$arg" == "--force" ]]; then
        query="?force=true"; force=1
    elif [[ "$arg" =~ ^[0-9]+$ && -z "$ticket_id" ]]; then
        ticket_id="$arg"
    elif [[ "$arg" =~ ^[0-9]+$ ]]; then
        usage_error "one ticket per call: $ticket_id and $arg given"
    else
        usage_error "not a ticket id or --force: $arg"
    fi
done
[[ -n "$ticket_id" ]] || usage_error "no ticket id given"
base_url="${ARCHIVER_URL:-http://127.0.0.1:8080}"
if [[ ! "$base_url" =~ ^https?://[^/] ]]; then
    echo "$0: ARCHIVER_URL must start with http:// or https:// (got '$base_url')" >&2
    exit 2
fi
if [[ -z "${ADMIN_BEARER_TOKEN:-}" && -z "${WEBHOOK_HMAC_SECRET:-}" ]]; then
    echo "$0: set ADMIN_BEARER_TOKEN or WEBHOOK_HMAC_SECRET" >&2
    exit 2
fi
url="$base_url/retry/${ticket_id}${query}"

exec python3 - "$url" "$ticket_id" "$force" <<'PY'
import hashlib, hmac, json, os, sys, time, urllib.error, urllib.request

url, ticket_id, force = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
signed = {"ticket_id": ticket_id, "requested_at": int(time.time())}
if force:
    signed["force"] = True  # the signature covers the force: a plain retry cannot be replayed as one
body = json.dumps(signed).encode()
headers = {"Content-Type": "application/json"}
token, secret = os.environ.get("ADMIN_BEARER_TOKEN"), os.environ.get("WEBHOOK_HMAC_SECRET")
if token:
    headers["Authorization"] = f"Bearer {token}"
elif secret:
    headers["X-Hub-Signature"] = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
else:
    sys.exit("set ADMIN_BEARER_TOKEN or WEBHOOK_HMAC_SECRET")
request = urllib.request.Request(url, data=body, headers=headers, method="POST")
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        print(response.read().decode())
except urllib.error.HTTPError as exc:
    print(exc.read().decode(), file=sys.stderr)
    sys.exit(1)
except urllib.error.URLError as exc:
    sys.exit(f"cannot reach {url}: {exc.reason}")
PY
