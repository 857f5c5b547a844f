"""domain.ids: pooled version 4 UUIDs."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from domain.ids import POOL_IDS, new_uuid4


def test_ids_are_random_version_4_uuids_and_unique_across_pools_and_threads() -> None:
    seen: list[uuid.UUID] = []
    lock = threading.Lock()

    def draw() -> None:
        ids = [new_uuid4() for _ in range(POOL_IDS * 3 + 5)]
        with lock:
            seen.extend(ids)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == len(seen) == 4 * (POOL_IDS * 3 + 5)
    assert {(u.version, u.variant) for u in seen} == {(4, uuid.RFC_4122)}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_reuses_its_parents_pool() -> None:
    new_uuid4()  # the parent's pool has ids left
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_uuid4().bytes)
        os._exit(0)
    os.waitpid(pid, 0)
    child = uuid.UUID(bytes=os.read(read, 16))
    os.close(read)
    os.close(write)
    assert child != new_uuid4()
