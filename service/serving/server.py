"""uvicorn with a draining shutdown, for `python -m service`.

On SIGTERM readiness answers 503 at once while requests are still served; after LRP_SHUTDOWN_DELAY_S
(time for a load balancer to notice) uvicorn stops accepting connections, lets every queued and running
request finish, runs the app's shutdown and the process exits with status 0. SIGINT (Ctrl-C) skips the
delay; a second one forces the exit, as in plain uvicorn.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn


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
