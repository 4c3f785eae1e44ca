"""Random ids (UUID4, hex) from the OS's CSPRNG, without a GIL release per id.

`uuid.uuid4()` calls `os.urandom(16)`, which releases the GIL for its getrandom() syscall.
A thread that gives the GIL up must win it back, and with the database threads busy that
wait lasts up to a switch interval: measured here under contention, ~0.5–1 ms per id
instead of ~2 µs (bench/README.md). A stream start made five of them (its question and
answer rows, the request id, the slot reservation, the SDK's idempotency key), each a
stall of the event loop or of a database thread.

So each thread draws 4 KiB from `os.urandom` at a time and slices ids from it: the same
generator's bytes, one syscall per 256 ids. Each thread has its own buffer (no lock), and a
forked child starts with none, so two gunicorn workers never hand out the same bytes.
"""

from __future__ import annotations

import os
import threading
import uuid

_BATCH_BYTES = 4096


class _Buffers(threading.local):
    data: bytes = b""
    offset: int = 0


_buffers = _Buffers()


def _forget_buffers() -> None:
    global _buffers
    _buffers = _Buffers()


os.register_at_fork(after_in_child=_forget_buffers)


def random_bytes(count: int = 16) -> bytes:
    """`count` (≤ 4096) bytes from the OS's CSPRNG, as `os.urandom(count)` would give."""
    buffer = _buffers
    end = buffer.offset + count
    if end > len(buffer.data):
        buffer.data = os.urandom(max(_BATCH_BYTES, count))
        buffer.offset, end = 0, count
    chunk = buffer.data[buffer.offset : end]
    buffer.offset = end
    return chunk


def new_uuid() -> uuid.UUID:
    """A random (version 4) UUID, as `uuid.uuid4()` makes one."""
    return uuid.UUID(bytes=random_bytes(16), version=4)


def new_hex() -> str:
    """32 random hex digits (`uuid.uuid4().hex`)."""
    return new_uuid().hex
