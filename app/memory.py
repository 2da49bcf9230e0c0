"""Handing freed heap memory back to the operating system after a big job.

CPython frees objects into its own pools and glibc's heap; the pages stay resident
(counted in the process's RSS) until the heap's top is free, which a single long-lived
object above the freed ones prevents. After a big ticket's snapshot is let go,
:func:`release_free_memory` asks glibc to return every wholly free page
(``malloc_trim(0)``, glibc ≥ 2.8 releases pages inside the heap too, with
``MADV_DONTNEED``), so the next steps of the job start from a smaller resident set.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:  # the C library this process already uses (no ldconfig lookup, no subprocess)
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the heap's free pages to the operating system (glibc only; elsewhere a no-op).

    Takes a few milliseconds for a heap of a few hundred MB; call it after large objects
    were freed, not in a hot path. Returns whether memory was actually released.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
