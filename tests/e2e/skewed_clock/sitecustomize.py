"""A host clock that is off, for one service process of a test: with this folder first on
``PYTHONPATH``, Python imports this module at start-up and ``time.time()`` answers
``FAKE_CLOCK_SKEW_SECONDS`` (float, may be negative) later than the host's clock.

A clock skew between two hosts cannot be produced for real on one machine without changing
the clock of everything on it; this is the fault injected instead. Only ``time.time`` moves
(what the job store's leases are computed with); ``time.monotonic`` and ``datetime.now`` keep
the host's clock.
"""

import os
import time

_SKEW = float(os.environ.get("FAKE_CLOCK_SKEW_SECONDS") or 0)
if _SKEW:
    _host_time = time.time

    def _skewed_time() -> float:
        return _host_time() + _SKEW

    time.time = _skewed_time
