"""An exclusive lock shared by several hosts on a folder of a network share: a lock file created ``O_EXCL``.

Why a lock *file* and not ``fcntl``/``flock`` locks: creating a file that must not exist
(``O_CREAT | O_EXCL``) is one atomic operation on the file server for every file system the
storage root may live on — ext4/XFS, NFSv3+ (``EXCLUSIVE4``/``GUARDED`` create) and SMB/CIFS
(the Linux client sends a create with disposition ``FILE_CREATE``, which Windows, Samba and
NAS servers refuse with "object name collision" when the name exists). Byte-range locks on a
CIFS mount are another matter: with ``nobrl`` they are local to the client and silently lock
nothing across hosts; without it they are mandatory locks on Windows servers and advisory ones
with Samba's POSIX extensions, and ``flock`` is emulated differently by kernel version. A lock
that silently locks nothing would let two replicas fork the manifest's chain, so we rely only
on the atomic create.

The price is that a holder that dies (power loss, SIGKILL) leaves its lock file behind. A
waiter that sees the *same* lock file (same random token inside) for longer than
``stale_after`` seconds — measured on its own monotonic clock, so clock skew between hosts
does not matter — breaks it: it renames the file away (atomic: of several breakers, one
wins) and tries again. Holds are short (one manifest line: a read of the file's tail and one
write), so a hold of ``stale_after`` seconds means the holder is gone or frozen. A holder
frozen longer than that (a paused VM) can find its lock broken when it wakes: :meth:`release`
then logs a warning, and the chain check of ``python -m app audit --manifest`` shows a fork
if two writers did append at once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from app.errors import StorageError

log = logging.getLogger("app.storage")

DEFAULT_STALE_AFTER_SECONDS = 30.0
"""How long a waiter sees the same lock file before it takes it for a dead holder's."""

DEFAULT_TIMEOUT_SECONDS = 60.0
"""How long :meth:`ShareLock.acquire` waits before giving up (longer than the stale time, so
a waiter always gets to break a dead holder's lock)."""

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK_READ_BYTES = 4096


class ShareLockTimeout(StorageError):
    """The lock stayed taken for longer than the timeout (``errno`` ``ETIMEDOUT``: Transient)."""


class ShareLock:
    """An exclusive, cross-host lock held as the file ``path`` (see the module docstring).

    Usable as a context manager; not re-entrant. One instance serves one thread at a time:
    hold a :class:`threading.Lock` around it when several threads share it (as
    :class:`app.storage.manifest.ArchiveManifest` does).

    Args:
        path: the lock file, e.g. ``STORAGE_ROOT/_manifest/.lock``; its folder must exist.
        stale_after: seconds after which an unchanged lock file is broken.
        timeout: seconds :meth:`acquire` waits in all.
        monotonic: the clock for both (seconds; for tests).
        sleep: how to wait between attempts (for tests).
    """

    def __init__(
        self,
        path: Path,
        *,
        stale_after: float = DEFAULT_STALE_AFTER_SECONDS,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(path)
        self.stale_after = stale_after
        self.timeout = timeout
        self._monotonic = monotonic
        self._sleep = sleep
        self._token: str | None = None
        # The lock file a waiter saw and since when (kept across acquire calls, so retries
        # of a job add up to the stale time instead of each starting from zero).
        self._seen: tuple[str, float] | None = None

    @property
    def held(self) -> bool:
        """Whether this instance holds the lock."""
        return self._token is not None

    def acquire(self) -> None:
        """Take the lock, waiting (10 ms, growing to 200 ms between attempts) up to ``timeout``.

        Raises:
            ShareLockTimeout: still taken after ``timeout`` seconds.
            StorageError: the lock file cannot be created for another reason (its ``errno``:
                ``EACCES``, ``EROFS``, ``ENOENT`` of the folder, ``EIO`` ...).
            RuntimeError: this instance holds the lock already.
        """
        if self._token is not None:
            raise RuntimeError("ShareLock is not re-entrant")
        deadline = self._monotonic() + self.timeout
        pause = 0.01
        while True:
            token = secrets.token_hex(16)
            if self._try_create(token):
                self._token = token
                self._seen = None
                return
            self._break_if_stale()
            if self._monotonic() >= deadline:
                raise ShareLockTimeout(
                    f"cannot lock '{self.path.name}': another writer held it for over {self.timeout:g} s",
                    errno=errno.ETIMEDOUT,
                )
            self._sleep(pause)
            pause = min(pause * 2, 0.2)

    def release(self) -> None:
        """Give the lock back (remove the lock file if it is still ours).

        A lock broken as stale while held is not removed (it is someone else's now); that
        is logged as a warning. Never raises for a file-system error (the next waiter
        breaks a lock file left behind after ``stale_after``).
        """
        token, self._token = self._token, None
        if token is None:
            return
        current = self._read_token()
        if current != token:
            log.warning(
                "lock file was taken over while held (this writer stalled longer than the stale time)",
                extra={"lock": str(self.path), "stale_after_seconds": self.stale_after},
            )
            return
        try:
            os.unlink(self.path)
        except OSError as exc:
            log.warning("cannot remove lock file", extra={"lock": str(self.path), "cause": str(exc)})

    def __enter__(self) -> ShareLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # -- internals ------------------------------------------------------------------------

    def _try_create(self, token: str) -> bool:
        try:
            fd = os.open(self.path, _CREATE_FLAGS, 0o640)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageError(
                f"cannot create lock file '{self.path.name}': {os.strerror(exc.errno or 0)}", errno=exc.errno
            ) from exc
        owner = {
            "token": token,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "since": time.time(),
        }
        try:
            os.write(fd, json.dumps(owner, sort_keys=True).encode())
        except OSError:
            pass  # an empty lock file still locks; it is only harder to tell whose it is
        finally:
            os.close(fd)
        return True

    def _read_token(self) -> str | None:
        """The token in the lock file, ``""`` when it has none yet, ``None`` when there is no file."""
        try:
            fd = os.open(self.path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError:
            return ""
        try:
            raw = os.read(fd, _LOCK_READ_BYTES)
        except OSError:
            raw = b""
        finally:
            os.close(fd)
        try:
            token = json.loads(raw).get("token", "")
        except (ValueError, AttributeError):
            return ""
        return token if isinstance(token, str) else ""

    def _break_if_stale(self) -> None:
        token = self._read_token()
        if token is None:
            self._seen = None
            return
        now = self._monotonic()
        if self._seen is None or self._seen[0] != token:
            self._seen = (token, now)
            return
        if now - self._seen[1] < self.stale_after:
            return
        # Same lock file for stale_after seconds: its holder is gone. Rename it away (only one
        # breaker's rename finds it), then check that what we moved is the lock we watched.
        moved = self.path.with_name(f"{self.path.name}.stale-{secrets.token_hex(6)}")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            self._seen = None
            return  # released or broken by someone else meanwhile
        except OSError as exc:
            log.warning("cannot break a stale lock file", extra={"lock": str(self.path), "cause": str(exc)})
            return
        self._seen = None
        moved_token = self._token_of(moved)
        if moved_token != token:
            # The holder released and another writer locked in between: put its lock back.
            try:
                os.link(moved, self.path)
            except OSError:
                log.warning(
                    "broke a lock file that had just been taken; the manifest chain check will show "
                    "any fork this causes",
                    extra={"lock": str(self.path)},
                )
        else:
            log.warning(
                "broke a stale lock file (its holder died or stalled)",
                extra={"lock": str(self.path), "stale_after_seconds": self.stale_after},
            )
        with contextlib.suppress(OSError):
            os.unlink(moved)

    @staticmethod
    def _token_of(path: Path) -> str:
        try:
            raw = path.read_bytes()[:_LOCK_READ_BYTES]
            token = json.loads(raw).get("token", "")
        except (OSError, ValueError, AttributeError):
            return ""
        return token if isinstance(token, str) else ""
