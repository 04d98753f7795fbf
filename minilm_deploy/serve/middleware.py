"""Pure ASGI middleware: Prometheus metrics (outermost), bearer-token auth, request body limit.

Each answers its own errors as `{"error": "..."}` JSON, as the Open Inference Protocol does.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DRAIN_LIMIT = 64 << 20  # past this much of an oversized body, answer 413 without reading on
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})  # probes work without a token


async def send_error(send: Any, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": message}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class Metrics:
    """The server's Prometheus series, in a registry of its own (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("minilm_requests", "HTTP requests by route and status code", ["route", "code"], registry=self.registry)
        self.latency = Histogram("minilm_request_seconds", "HTTP request latency", ["route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch = Histogram("minilm_batch_texts", "texts per model call", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.infer = Histogram("minilm_inference_seconds", "model call duration", registry=self.registry,
                               buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.wait = Histogram("minilm_queue_wait_seconds", "time the oldest request of a batch waited", registry=self.registry,
                              buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
        self.texts = Counter("minilm_texts", "texts predicted", registry=self.registry)
        self.queue = Gauge("minilm_queue_depth", "requests waiting for a batch", registry=self.registry)
        self.rejected = Counter("minilm_rejected", "requests refused before inference, by reason", ["reason"], registry=self.registry)

    def on_batch(self, texts: int, seconds: float, waited: float) -> None:
        self.batch.observe(texts)
        self.infer.observe(seconds)
        self.wait.observe(waited)
        self.texts.inc(texts)


class MetricsMiddleware:
    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"  # templates keep label counts bounded
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


class AuthMiddleware:
    def __init__(self, app: Any, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.token is None or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), self.token.encode()):
            return await send_error(send, 401, "missing or wrong bearer token; send 'Authorization: Bearer TOKEN'",
                                    [(b"www-authenticate", b'Bearer realm="minilm"')])
        return await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse bodies over `limit` bytes with 413: at once by Content-Length (nothing is read), or while reading a
    chunked body; and bodies that do not arrive within `timeout_s` of the headers with 408 (a slow client)."""

    def __init__(self, app: Any, limit: int, timeout_s: float = 30.0) -> None:
        self.app, self.limit, self.timeout_s = app, limit, timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        too_big = f"the request body is over the limit of {self.limit} bytes; send smaller batches"
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await send_error(send, 413, too_big)  # the server closes the connection with the body unread
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        over, chunks, size, more = False, [], 0, True
        while more and size <= DRAIN_LIMIT:  # read (and past the limit, discard) so the client sees the answer
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return await send_error(send, 408, f"the request body did not arrive within {self.timeout_s:g} s; "
                                        "send it faster or raise --body-timeout")
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            over = over or size > self.limit
            if not over:
                chunks.append(chunk)
            more = message.get("more_body", False)
        if over:
            return await send_error(send, 413, too_big)
        body, replayed = b"".join(chunks), [False]

        async def replay() -> dict:
            if not replayed[0]:
                replayed[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)
