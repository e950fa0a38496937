"""Admission before work: a bound on the request bodies being read and decoded at once.

A score request takes a slot, and its declared ``Content-Length`` (the body limit when it declares
none) of a byte budget, before a byte of its body is read; it holds them until its images are
decoded and queued. One that does not fit is answered 503 with ``Retry-After`` at once, its body
unread: a burst of large bodies cannot fill the memory or the threads that decode them, and the
event loop stays free for ``/health``. All methods run on the event loop.
"""

from __future__ import annotations

from .schema import ApiError


class Admission:
    def __init__(self, max_bodies: int, max_bytes: int, body_limit: int) -> None:
        self.max_bodies, self.max_bytes, self.body_limit = max_bodies, max_bytes, body_limit
        self.bodies = 0
        self.bytes = 0
        self.refused = 0

    def enter(self, content_length: str | None) -> int:
        """Take a slot for a body of ``content_length`` bytes; returns the bytes held (give them to ``leave``)."""
        size = int(content_length) if content_length and content_length.isdigit() else self.body_limit
        size = min(size, self.body_limit)  # a larger one is refused (413) right after, before reading
        if self.bodies + 1 > self.max_bodies or (self.bodies and self.bytes + size > self.max_bytes):
            self.refused += 1
            raise ApiError(503, "busy", f"{self.bodies} request bodies ({self.bytes:,} bytes) are being read and "
                                        f"decoded, this server's limit is {self.max_bodies} bodies and "
                                        f"{self.max_bytes:,} bytes; retry in 1 s", headers={"Retry-After": "1"})
        self.bodies += 1
        self.bytes += size
        return size

    def leave(self, size: int) -> None:
        self.bodies -= 1
        self.bytes -= size
