"""What the running service holds: its settings and, once loading has finished, the model registry."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from service.config import Settings
from service.errors import NotReadyError
from service.registry import Registry, resolve_device

log = logging.getLogger("service")


@dataclass
class ServiceState:
    """Settings plus the registry; `registry` is None until every model has been loaded and warmed up."""

    settings: Settings
    registry: Registry | None = None
    load_error: str | None = None

    def load(self) -> None:
        """Load every model (blocking; the app runs it in a worker thread at start-up). A failure is logged
        and keeps the service unready with a message, instead of ending the process."""
        try:
            device = resolve_device(self.settings.device)
            self.registry = Registry.from_directory(self.settings.models_dir, device)
        except Exception:  # a bug or a bad device must not leave the service silently unready
            log.exception("loading the models failed")
            self.load_error = "loading the models failed; see the server log"

    def ready_registry(self) -> Registry:
        """The registry; raise NotReadyError (503) while models are still loading or when loading failed."""
        if self.registry is None:
            raise NotReadyError(self.load_error or "the service is still loading its models; retry shortly "
                                "(GET /health/ready answers 200 when it is ready)")
        return self.registry
