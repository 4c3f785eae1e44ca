"""The project's fake upstream plus one canned reply, ``reply=bulk``: a few megabytes in
4 KiB chunks, so that a client that stops reading fills every socket buffer between it and
the stream service in well under a second of generation (the default reply's 5-byte
chunks would need minutes). Everything else is the fake exactly as shipped.

Run by `BulkFakeUpstream` (conftest.py) as ``python -m tests.integration.faults.bulk_upstream``.
"""

from __future__ import annotations

from pathlib import Path

import tests.support.fake_upstream as fake

BULK_CHUNK_CHARS = 4096


def _kernel_send_buffer_max() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * 1024 * 1024


# Twice the largest send buffer the kernel may give the stream service's socket.
BULK_CHUNKS = max(1024, 2 * _kernel_send_buffer_max() // BULK_CHUNK_CHARS)
BULK_TEXT = "".join(
    f"[chunk {i:05d}]".ljust(BULK_CHUNK_CHARS - 1, "~") + "\n" for i in range(BULK_CHUNKS)
)


def install() -> None:
    fake.CANNED_REPLIES["bulk"] = BULK_TEXT
    split = fake._split

    def bulk_split(text: str) -> list[str]:
        if text is BULK_TEXT:
            return [text[i : i + BULK_CHUNK_CHARS] for i in range(0, len(text), BULK_CHUNK_CHARS)]
        return split(text)

    fake._split = bulk_split


if __name__ == "__main__":
    install()
    fake.main()
