"""uvicorn with a draining shutdown, for `python -m service`.

On SIGTERM readiness answers 503 at once while requests are still served; after LRP_SHUTDOWN_DELAY_S
(time for a load balancer to notice) uvicorn stops accepting connections, lets every queued and running
request finish, runs the app's shutdown and the process exits with status 0. SIGINT (Ctrl-C) skips the
delay; a second one forces the exit, as in plain uvicorn. Connections are bounded: each request's head must arrive
within LRP_HEADER_TIMEOUT_S of the connection opening (or of the previous answer), so idle and slow-header
(slowloris) connections are closed, and past LRP_MAX_CONNECTIONS open connections uvicorn answers 503.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on every request head: armed when the connection opens and again
    after each answer (while keep-alive waits for the next request), cleared once a whole head has arrived; a
    connection still without one at the deadline is closed, however slowly it sends bytes."""

    head_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._clear_head_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._clear_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_too_late)

    def _clear_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_late(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def bounded_config(app: Any, host: str, port: int, log_level: str, head_timeout_s: float,
                   max_connections: int) -> uvicorn.Config:
    """uvicorn's configuration of the service: one worker, request heads within `head_timeout_s`, and 503 past
    `max_connections` open connections (uvicorn's limit_concurrency)."""
    protocol = type("BoundedHeadProtocol", (HeadDeadlineProtocol,), {"head_timeout_s": head_timeout_s})
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, workers=1, http=protocol,
                          limit_concurrency=max_connections)


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose SIGTERM first calls `on_terminate` (readiness -> 503), then drains and exits."""

    def __init__(self, config: uvicorn.Config, on_terminate: Callable[[], None], delay_s: float) -> None:
        super().__init__(config)
        self._on_terminate = on_terminate
        self._delay_s = delay_s
        self._exit_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM: start draining and exit after the delay (a second SIGTERM: now); other signals as uvicorn."""
        self._on_terminate()
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        now = time.monotonic()
        self._exit_at = now if self._exit_at is not None else now + self._delay_s

    async def on_tick(self, counter: int) -> bool:
        """uvicorn's 0.1 s housekeeping tick; begins the shutdown once the drain delay has passed."""
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)
