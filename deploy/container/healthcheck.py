#!/opt/venv/bin/python
"""Container health check: exit 0 when GET /healthz on the local port answers 200, else 1.

Installed in the image as /usr/local/bin/archiver-healthcheck; used by the Containerfile's
HEALTHCHECK and compose.yaml. The port is SERVER_PORT (default 8080); the service must listen
on 0.0.0.0 or 127.0.0.1 inside the container (the image's default SERVER_HOST is 0.0.0.0).
"""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('SERVER_PORT', '8080')}/healthz"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
    print(f"unhealthy: {url}: {exc}", file=sys.stderr)
    sys.exit(1)
