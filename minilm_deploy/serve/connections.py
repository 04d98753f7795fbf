"""Connection deadlines uvicorn does not have: a request's headers must be complete within
`header_timeout_s` of its first byte (or of connecting, for a connection's first request), else the
connection is closed.

uvicorn closes a keep-alive connection that stays silent (`timeout_keep_alive`, the idle timeout) but
not one that trickles bytes, nor a new connection that never sends any; and its `limit_concurrency`
counts such sockets, so enough of them turn every other request into a 503. Here idle and slow-header
sockets are closed at their deadlines, the concurrency cap is the batcher's queue (requests, not
sockets), and the body has its own deadline (`middleware.BodyLimitMiddleware`).

Between requests only the idle timeout applies: a keep-alive connection stays usable for the whole
idle timeout, so a client pool that reuses connections for less than that (httpx: 5 s) never sends a
request into a connection the server is closing (the client would get a reset, not an answer). One
timer per connection: armed when it opens and when the first bytes of a next request arrive; when it
fires with no request in progress, the connection goes. The class wraps uvicorn's own HTTP protocol
(h11 or httptools, whichever uvicorn picks).
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any


def deadline_protocol(header_timeout_s: float) -> type:
    """uvicorn's HTTP protocol class with a header deadline (pass it as `uvicorn.Config(http=...)`)."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class HeaderDeadlineProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline: asyncio.TimerHandle | None = None
            self._arm()  # a new connection must send its first request's headers in time

        def data_received(self, data: bytes) -> None:
            if self._deadline is None and self._between_requests():
                self._arm()  # the first bytes of a next request: its headers must follow in time
            super().data_received(data)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._between_requests():  # silence from here on is the idle timeout's to end
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(header_timeout_s, self._deadline_passed)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _deadline_passed(self) -> None:
            self._deadline = None
            if self._between_requests():  # the request's headers did not arrive in time
                self.transport.close()

    return HeaderDeadlineProtocol


def raise_open_file_limit() -> dict[str, Any]:
    """Raise the soft limit on open files to the hard one: each client socket is a file, and 1,024 (a common
    default) idle sockets would otherwise stop the server accepting anyone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return {"open_files": soft}
