"""ai_features/ids.py: random ids from a per-thread buffer of the OS's CSPRNG."""

from __future__ import annotations

import os
import threading
import uuid

from ai_features import ids
from ai_features.models import Conversation, Message


def test_new_uuid_is_a_version_4_uuid_and_never_repeats() -> None:
    made = [ids.new_uuid() for _ in range(5000)]  # more than one 4 KiB buffer
    assert all(isinstance(u, uuid.UUID) and u.version == 4 for u in made)
    assert all(u.variant == uuid.RFC_4122 for u in made)
    assert len(set(made)) == len(made)
    assert len(ids.new_hex()) == 32 and int(ids.new_hex(), 16) >= 0


def test_random_bytes_come_from_os_urandom_in_batches(monkeypatch) -> None:
    calls: list[int] = []
    real = os.urandom

    def counting(count: int) -> bytes:
        calls.append(count)
        return real(count)

    monkeypatch.setattr(ids.os, "urandom", counting)
    monkeypatch.setattr(ids, "_buffers", ids._Buffers())
    chunks = [ids.random_bytes(16) for _ in range(512)]
    assert calls == [4096, 4096]  # 256 ids per syscall
    assert b"".join(chunks[:256]) != b"".join(chunks[256:])


def test_each_thread_has_its_own_bytes() -> None:
    seen: dict[str, list[bytes]] = {}

    def draw(name: str) -> None:
        seen[name] = [ids.random_bytes(16) for _ in range(300)]

    threads = [threading.Thread(target=draw, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [chunk for chunks in seen.values() for chunk in chunks]
    assert len(set(every)) == len(every) == 1200


def test_a_forked_child_does_not_reuse_the_parents_buffer() -> None:
    ids.random_bytes(16)  # the parent now holds a buffer with bytes left in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next id, then leave at once
        os.close(read)
        os.write(write, ids.random_bytes(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert child != ids.random_bytes(16)


def test_rows_get_their_ids_from_it() -> None:
    for model in (Conversation, Message):
        assert model._meta.pk.default is ids.new_uuid
