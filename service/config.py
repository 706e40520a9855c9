"""Settings from environment variables with the prefix `LRP_`; each has a default that works out of the box."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

# 0 means: any free port, no batching delay, exit at once, torch's default thread count.
ZERO_ALLOWED = ("port", "max_delay_ms", "shutdown_delay_s", "cpu_threads")


@dataclass(frozen=True)
class Settings:
    """Service settings; `Settings.from_env()` reads `LRP_<NAME>` for every field (e.g. `LRP_PORT=9000`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    models_dir: Path = Path("models")
    device: str = "auto"
    log_level: str = "info"
    max_instances: int = 64
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_batch_size: int = 32
    max_delay_ms: int = 5
    max_queue: int = 1024
    request_timeout_s: int = 30
    shutdown_delay_s: int = 0
    cpu_threads: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `LRP_*` variables; raise ValueError naming the variable when one cannot be parsed."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for spec in fields(cls):
            variable = f"LRP_{spec.name.upper()}"
            raw = environ.get(variable)
            if raw is None or raw == "":
                continue
            default = getattr(cls, spec.name)
            if isinstance(default, int):
                try:
                    number = int(raw)
                except ValueError:
                    raise ValueError(f"{variable} must be an integer, got {raw!r}") from None
                if spec.name in ZERO_ALLOWED and number < 0:
                    raise ValueError(f"{variable} must be 0 or more, got {number}")
                if number <= 0 and spec.name not in ZERO_ALLOWED:
                    raise ValueError(f"{variable} must be positive, got {number}")
                if spec.name == "port" and not 0 <= number <= 65535:
                    raise ValueError(f"{variable} must be a port number 0..65535, got {number}")
                values[spec.name] = number
            elif isinstance(default, Path):
                values[spec.name] = Path(raw)
            else:
                values[spec.name] = raw
        settings = cls(**values)  # type: ignore[arg-type]
        if not _valid_device(settings.device):
            raise ValueError(f"LRP_DEVICE must be auto, cpu, cuda or cuda:N, got {settings.device!r}")
        return settings


def _valid_device(device: str) -> bool:
    if device in ("auto", "cpu", "cuda"):
        return True
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()
