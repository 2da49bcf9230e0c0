"""Giving freed heap memory back to the OS (glibc's malloc_trim), measured on a real process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_release_free_memory_shrinks_the_resident_set_after_a_big_free():
    script = textwrap.dedent("""
        from app.memory import release_free_memory

        def rss():
            return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024

        chunks = [bytes(1500) for _ in range(60_000)]   # ~90 MB in heap-sized pieces
        keeper = bytes(1500)                            # allocated last: the heap's top stays in use
        del chunks
        before = rss()
        released = release_free_memory()
        print(before, rss(), released)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after, released = done.stdout.split()
    assert released == "True"
    assert int(before) - int(after) > 50, done.stdout  # MiB
