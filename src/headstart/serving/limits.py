"""The service's limits, per request (:class:`Limits`) and per connection (:class:`ConnectionLimits`).

Plain data with no server imports, so that ``headstart serve --help`` and the other commands do
not pay for uvicorn; ``GET /metadata`` lists every one of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from headstart.errors import ConfigError

MiB = 1024 * 1024
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_BODY_BYTES = 8 * MiB
DEFAULT_MAX_TEXT_CHARS = 100_000
# A PNG of one flat colour compresses a gigapixel into a few kB: refuse images this large before
# decoding them (25 Mpx ≈ 75 MB as RGB), whatever the body size...
MAX_IMAGE_PIXELS = 25_000_000
# ...and requests whose images add up to more than this (decoding 100 Mpx takes about a second of
# CPU; an 8 MiB body of real photos holds less).
DEFAULT_MAX_REQUEST_PIXELS = 100_000_000


@dataclass(frozen=True)
class Limits:
    """Bounds on one request. Every one is checked before any work is done on the items."""

    max_batch: int = DEFAULT_MAX_BATCH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    threads: int = 1

    def __post_init__(self) -> None:
        bad = [f"{name}={value!r}" for name, value in asdict(self).items()
               if isinstance(value, bool) or not isinstance(value, int) or value < 1]
        if bad:
            raise ConfigError(f"service limits must be whole numbers >= 1; got {', '.join(bad)}.")


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines and caps on the connections of one worker process, enforced by
    :class:`headstart.serving.connections.GuardedH11Protocol` (its docstring says how)."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 512
    max_requests_per_connection: int = 1000

    def __post_init__(self) -> None:
        bad = [f"{name}={value!r}" for name, value in asdict(self).items()
               if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0]
        bad += [f"{name}={getattr(self, name)!r} (a whole number)" for name in ("max_connections", "max_requests_per_connection")
                if isinstance(getattr(self, name), float)]
        if bad:
            raise ConfigError(f"connection limits must be positive; got {', '.join(bad)}.")

    def describe(self) -> dict[str, Any]:
        """The limits as ``/metadata`` shows them (seconds suffixed ``_s``)."""
        return {"header_timeout_s": self.header_timeout, "body_timeout_s": self.body_timeout,
                "keep_alive_timeout_s": self.keep_alive_timeout, "max_connections": self.max_connections,
                "max_requests_per_connection": self.max_requests_per_connection}
