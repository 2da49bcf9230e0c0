"""The job store's WAL sync helper: a tiny process that makes committed transactions durable.

Run by :class:`app.jobs.sqlite.SqliteJobStore` as ``python -I -S walsync.py DB-WAL-PATH`` (standard
library only, no imports from ``app``). Protocol on stdin/stdout, one byte each way:

- it reads one byte (any value): "sync what is committed now";
- it calls ``fdatasync`` on the WAL file (``fsync`` where there is none) and answers ``b"k"``;
- when the sync fails it answers ``b"E"`` followed by the error text and a newline, and exits 1;
- end of stdin: it exits 0 (it ignores SIGINT and SIGTERM: the service ends it by closing
  its stdin, and a service killed outright closes it too).

``fdatasync`` covers the file (its inode), whichever process wrote the pages, so the service's
``COMMIT`` (``synchronous=NORMAL``) followed by this sync is what ``synchronous=FULL`` does in
WAL mode: "an additional sync operation of the WAL file happens after each transaction commit"
(https://www.sqlite.org/pragma.html#pragma_synchronous). The point of a separate process is
the GIL: a sync thread in the service has to win the GIL back from the busy event loop after
every ``fsync`` (see ``docs/performance.md``).

If the WAL file was replaced (another inode at the path), it is opened again before the sync.
"""

from __future__ import annotations

import os
import signal
import sys

_sync = getattr(os, "fdatasync", os.fsync)


def _open(path: str) -> tuple[int, int]:
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
    return fd, os.fstat(fd).st_ino


def main(path: str) -> int:
    """Serve sync requests on stdin/stdout for the WAL file at ``path``; returns the exit status."""
    # Ctrl-C or a SIGTERM sent to the whole process group must not end the helper before the
    # service: the service's graceful shutdown still commits. The helper ends with its stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd, inode = _open(path)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    while os.read(stdin, 1):
        try:
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = inode
            if current != inode:
                os.close(fd)
                fd, inode = _open(path)
            _sync(fd)
        except OSError as exc:
            os.write(stdout, b"E" + f"{exc}".encode("utf-8", "replace").replace(b"\n", b" ") + b"\n")
            return 1
        os.write(stdout, b"k")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
