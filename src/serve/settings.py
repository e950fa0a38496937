"""What the reward server accepts and how it batches; checked before anything loads."""

from __future__ import annotations

from dataclasses import dataclass

from ..benchmark import MAX_INSTRUCTION_CHARS


@dataclass
class ServeSettings:
    """How the server batches and what it accepts (``editjudge serve --help`` names the flags)."""

    host: str = "127.0.0.1"
    port: int = 8000
    batch_size: int = 8  # items per judge call; 1 turns dynamic batching off
    max_wait_ms: float = 10.0  # how long the oldest waiting item may wait for its batch to fill
    max_queue: int = 1024  # items waiting at most; a request that does not fit gets 429
    max_items: int = 512  # items per request
    max_body_bytes: int = 128 * 2**20
    max_image_pixels: int = 4096 * 4096
    max_queue_pixels: int = 2**30  # decoded pixels of the waiting items (3 GiB as RGB); bounds their memory
    token_env: str = "EDITJUDGE_SERVER_TOKEN"  # when this variable is set, requests need its bearer token
    max_instruction_chars: int = MAX_INSTRUCTION_CHARS  # longer instructions are cut, as the job cuts them
    header_timeout: float = 10.0  # seconds from a connection's first byte (or its opening) to a request's last header
    body_timeout: float = 60.0  # seconds from the last header to the last byte of the body
    keep_alive_timeout: float = 5.0  # seconds an idle kept-alive connection stays open between requests
    max_bodies: int = 16  # request bodies read and decoded at once; more get 503 with Retry-After, unread
    max_bodies_bytes: int = 512 * 2**20  # their declared sizes together (one body alone is always admitted)
    group_wait_s: float = 120.0  # version 2: how long a group waits for its members, from the first request's arrival
    max_open_groups: int = 100_000  # version 2: groups waiting for members at once

    def problems(self) -> list[str]:
        out = []
        for name in ("batch_size", "max_queue", "max_items", "max_body_bytes", "max_image_pixels", "max_queue_pixels",
                     "max_instruction_chars", "max_open_groups", "max_bodies", "max_bodies_bytes"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("header_timeout", "body_timeout", "keep_alive_timeout", "group_wait_s"):
            if not getattr(self, name) > 0:
                out.append(f"{name} must be a positive number of seconds, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            out.append(f"max_wait_ms must be 0 or more, got {self.max_wait_ms}")
        if self.max_items > self.max_queue:
            out.append(f"max_items ({self.max_items}) must not exceed max_queue ({self.max_queue}): "
                       "a request that large could never be queued")
        if self.max_image_pixels > self.max_queue_pixels:
            out.append(f"max_image_pixels ({self.max_image_pixels}) must not exceed max_queue_pixels "
                       f"({self.max_queue_pixels}): such an image could never be queued")
        if not 0 <= self.port <= 65535:
            out.append(f"port must be 0-65535, got {self.port}")
        return out
