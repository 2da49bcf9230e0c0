#!/usr/bin/env bash
# Show what the job store knows about one ticket: GET /jobs/TICKET_ID, authenticated.
#
# Usage: scripts/ops/jobs.sh TICKET_ID
#
# Environment:
#   ARCHIVER_URL          base URL of the service (default http://127.0.0.1:8080)
#   ADMIN_BEARER_TOKEN    when set, sent as "Authorization: Bearer …"
#   WEBHOOK_HMAC_SECRET   otherwise the request target /jobs/N?requested_at=<now> is signed with it
#                         (X-Hub-Signature: sha1=…); valid for 5 minutes
# Secrets are read from the environment and never put on a command line.
#
# Exit status: 0 answered (the job as JSON on stdout); 1 the service answered an HTTP error
# (its answer on stderr) or could not be reached; 2 usage or set-up error (the command line, no
# ADMIN_BEARER_TOKEN and no WEBHOOK_HMAC_SECRET, an ARCHIVER_URL that is no http(s) URL).
set -euo pipefail

ticket_id="${1:-}"
if [[ $# -ne 1 || ! "$ticket_id" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 TICKET_ID" >&2
    exit 2
fi

base_url="${ARCHIVER_URL:-http://127.0.0.1:8080}"
if [[ ! "$base_url" =~ ^https?://[^/] ]]; then
    echo "$0: ARCHIVER_URL must start with http:// or https:// (got '$base_url')" >&2
    exit 2
fi
if [[ -z "${ADMIN_BEARER_TOKEN:-}" && -z "${WEBHOOK_HMAC_SECRET:-}" ]]; then
    echo "$0: set ADMIN_BEARER_TOKEN or WEBHOOK_HMAC_SECRET" >&2
    exit 2
fi

exec python3 - "$base_url" "$ticket_id" <<'PY'
import hashlib, hmac, os, sys, time, urllib.error, urllib.request

base, ticket_id = sys.argv[1], sys.argv[2]
target = f"/jobs/{ticket_id}?requested_at={int(time.time())}"
headers = {}
token, secret = os.environ.get("ADMIN_BEARER_TOKEN"), os.environ.get("WEBHOOK_HMAC_SECRET")
if token:
    headers["Authorization"] = f"Bearer {token}"
elif secret:
    headers["X-Hub-Signature"] = "sha1=" + hmac.new(secret.encode(), target.encode(), hashlib.sha1).hexdigest()
else:
    sys.exit("set ADMIN_BEARER_TOKEN or WEBHOOK_HMAC_SECRET")
try:
    with urllib.request.urlopen(urllib.request.Request(base + target, headers=headers), timeout=30) as response:
        print(response.read().decode())
except urllib.error.HTTPError as exc:
    print(exc.read().decode(), file=sys.stderr)
    sys.exit(1)
except urllib.error.URLError as exc:
    sys.exit(f"cannot reach {base}: {exc.reason}")
PY
