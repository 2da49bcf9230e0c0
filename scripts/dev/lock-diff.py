#!/usr/bin/env python3
"""Print the packages whose installed version differs from a lock file (``make test-latest``).

    python scripts/dev/lock-diff.py requirements/test.lock

Compares the ``name==version`` pins of the lock (a ``uv pip compile`` / pip-tools
requirements file; hashes, comments and environment markers are read past) with the
distributions installed in the running interpreter's environment, and prints one line per
difference, sorted by name::

    cryptography  51.0.1 -> 52.0.0
    newpackage    (not in the lock) -> 1.2.0
    oldpackage    3.0 -> (not installed)

Pins whose marker does not apply here (``; sys_platform == 'win32'``) are left out, and so is
the project itself. Exit status 0 whether or not versions differ (this is a report, not a
check); 2 when the lock cannot be read.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PROJECT = "zammad-pdf-archiver"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;([^\\]*))?")


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them: lower case, runs of ``-_.`` as ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_applies(marker: str | None) -> bool:
    if not marker or not marker.strip():
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # no packaging here: count the pin rather than guess it away
        return True
    return Marker(marker.strip()).evaluate()


def read_lock(path: Path) -> dict[str, str]:
    """The lock's pins that apply to this interpreter, as ``{canonical name: version}``.

    Raises:
        OSError: the file cannot be read.
    """
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match and _marker_applies(match.group(3)):
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    """The distributions of the running environment, as ``{canonical name: version}``."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def differences(locked: dict[str, str], present: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    """``(name, locked version or None, installed version or None)`` for every name whose
    versions differ, sorted by name; the project itself is skipped."""
    out = []
    for name in sorted(set(locked) | set(present)):
        if name == PROJECT:
            continue
        if locked.get(name) != present.get(name):
            out.append((name, locked.get(name), present.get(name)))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: lock-diff.py LOCKFILE", file=sys.stderr)
        return 2
    lock = Path(argv[0])
    try:
        locked = read_lock(lock)
    except OSError as exc:
        print(f"lock-diff: cannot read {lock}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    diff = differences(locked, installed())
    if not diff:
        print(f"lock-diff: every installed package has the version {lock} pins")
        return 0
    print(f"lock-diff: {len(diff)} packages differ from {lock} (lock -> installed):")
    width = max(len(name) for name, _, _ in diff)
    for name, was, now in diff:
        print(f"  {name:<{width}}  {was or '(not in the lock)'} -> {now or '(not installed)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
