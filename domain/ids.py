"""Random (version 4) UUIDs drawn from a per-thread pool of OS randomness.

``uuid.uuid4()`` reads 16 bytes with one ``getrandom`` call, and CPython lets
go of the GIL around it: in the push worker, with 60+ threads runnable, every
new id handed the GIL to another thread and waited to get it back (two ids
per export). :func:`new_uuid4` takes the same OS randomness 256 ids at a time
per thread; the ids are as unpredictable as ``uuid4``'s. A forked child draws
a new pool (never its parent's remaining bytes).
"""

from __future__ import annotations

import os
import threading
import uuid

#: Ids drawn per ``os.urandom`` call.
POOL_IDS = 256


class _Pool(threading.local):
    pid = -1
    data = b""
    at = 0


_pool = _Pool()


def new_uuid4() -> uuid.UUID:
    """A random version 4 UUID (like ``uuid.uuid4()``, see the module docstring)."""
    pool = _pool
    at = pool.at
    pid = os.getpid()
    if at >= len(pool.data) or pool.pid != pid:
        pool.data = os.urandom(16 * POOL_IDS)
        pool.pid = pid
        at = 0
    pool.at = at + 16
    return uuid.UUID(bytes=pool.data[at : at + 16], version=4)
