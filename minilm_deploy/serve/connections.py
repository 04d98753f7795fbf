"""Connection deadlines uvicorn does not have: a client must send a request's headers within
`header_timeout_s` of connecting or of its previous response, else the connection is closed.

uvicorn closes a keep-alive connection that stays silent (`timeout_keep_alive`) but not one that
trickles bytes, nor a new connection that never sends any; and its `limit_concurrency` counts such
sockets, so enough of them turn every other request into a 503. Here idle and slow-header sockets
are closed at the deadline, the concurrency cap is the batcher's queue (requests, not sockets), and
the body has its own deadline (`middleware.BodyLimitMiddleware`). One timer per connection, armed
when it opens and after each response: when it fires with no request in progress, the connection
goes. The class wraps uvicorn's own HTTP protocol (h11 or httptools, whichever uvicorn picks).
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
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(header_timeout_s, self._deadline_passed)

        def _deadline_passed(self) -> None:
            cycle = getattr(self, "cycle", None)
            if cycle is None or cycle.response_complete:  # no request's headers arrived in time
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
