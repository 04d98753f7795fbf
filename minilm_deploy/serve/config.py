"""Server settings, as typed values (the CLI's flags map one to one)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    model_name: str = ""  # default: the artifact's Triton model name, else its folder name
    max_batch_size: int = 32  # texts per model call; 1 turns dynamic batching off
    max_queue_delay_ms: float = 5.0  # how long a request may wait for others to share its batch
    chunk_size: int = 8  # > 0: run a batch sorted by length in chunks of this many texts (less padding; CPU); 0: one call
    wait_when_idle: bool = False  # also delay a lone request (Triton's behaviour); default: only under load
    max_queue: int = 256  # requests waiting; beyond it: 503
    max_request_texts: int = 256  # texts in one request; beyond it: 400
    max_body_bytes: int = 1 << 20  # request body limit; beyond it: 413
    timeout_s: float = 30.0  # per request, queueing included; beyond it: 504
    header_timeout_s: float = 10.0  # a request's headers must be complete within this of its first byte (or of connecting)
    body_timeout_s: float = 30.0  # a request's whole body must arrive within this of its headers; beyond it: 408
    # a keep-alive connection silent this long is closed; longer than client pools keep connections (httpx 5 s,
    # aiohttp 15 s), so a pool never sends a request into a connection the server is closing
    idle_timeout_s: float = 30.0
    token: str | None = None  # bearer token; None: no auth
    graceful_timeout_s: float = 30.0  # on SIGTERM/SIGINT: how long requests in flight may take to finish

    def __post_init__(self) -> None:
        checks = {
            "max_batch_size": self.max_batch_size >= 1, "max_queue": self.max_queue >= 1,
            "max_request_texts": self.max_request_texts >= 1, "max_body_bytes": self.max_body_bytes >= 256,
            "timeout_s": self.timeout_s > 0, "max_queue_delay_ms": self.max_queue_delay_ms >= 0,
            "header_timeout_s": self.header_timeout_s > 0, "body_timeout_s": self.body_timeout_s > 0,
            "idle_timeout_s": self.idle_timeout_s > 0,
            "port": 0 <= self.port <= 65535, "chunk_size": self.chunk_size >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"{bad[0]}={getattr(self, bad[0])!r} is out of range")
