"""The models held in memory: every directory under the models folder, loaded, checked and warmed up.

A model that cannot be loaded is refused with a logged message naming it, its file and the problem;
the other models still load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from service.errors import ModelFileError, ModelNotFoundError
from service.inputs import Bounds, model_space_bounds
from service.lrp import LRPError, PreparedModel
from service.model_format import MODEL_FILE, ModelSpec, load_model

log = logging.getLogger("service.registry")


@dataclass(frozen=True)
class ModelEntry:
    """One servable model: its spec, the prepared graph on the serving device and its zbox bounds."""

    name: str
    spec: ModelSpec
    prepared: PreparedModel
    bounds: Bounds | None

    @property
    def classes(self) -> list[str]:
        """Class labels, indexed by output position."""
        return self.spec.classes

    def layers(self) -> list[dict[str, str]]:
        """Every layer with the rule it gets under the model's default composite."""
        return self.prepared.layer_rules(self.spec.default_composite)


@dataclass
class Registry:
    """Loaded models by name, and the models refused at load time with the reason."""

    models: dict[str, ModelEntry] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> ModelEntry:
        """The model called `name`; raise ModelNotFoundError listing the available names."""
        entry = self.models.get(name)
        if entry is None:
            raise ModelNotFoundError(f"no model named '{name}'; available models are {sorted(self.models)} "
                                     "(GET /models lists them)")
        return entry

    @classmethod
    def from_directory(cls, directory: Path, device: torch.device) -> Registry:
        """Load every `<directory>/<name>/model.json`; failures are logged and recorded, never raised."""
        registry = cls()
        if not directory.is_dir():
            log.error("models directory %s does not exist (set LRP_MODELS_DIR); serving no models", directory)
            return registry
        for path in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            if not (path / MODEL_FILE).is_file():
                continue
            try:
                entry = load_entry(path, device)
            except ModelFileError as problem:
                registry.failures[path.name] = str(problem)
                log.error("refused model: %s", problem)
                continue
            registry.models[entry.name] = entry
            log.info("loaded model '%s' (%s input %s, %d classes) on %s", entry.name, entry.spec.input.kind,
                     entry.spec.input.shape, len(entry.classes), device)
        return registry


def load_entry(path: Path, device: torch.device) -> ModelEntry:
    """Load one model directory, move it to `device`, check its defaults and warm it up with one explain."""
    loaded = load_model(path)
    prepared = loaded.prepared.to(device)
    entry = ModelEntry(loaded.name, loaded.spec, prepared, model_space_bounds(loaded.spec.input))
    try:
        params = default_params(entry, entry.spec.default_composite, {})
        warm = torch.zeros(1, *loaded.spec.input.shape, device=device)
        prepared.explain(warm, None, entry.spec.default_composite, **params)
    except LRPError as problem:
        raise ModelFileError(f"model '{loaded.name}': {MODEL_FILE}: default_composite/default_params: "
                             f"{problem}") from None
    return entry


def default_params(entry: ModelEntry, composite: str | dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The LRP parameters of a request: the model's defaults (for its default composite only), then the
    input's bounds as zbox low/high, then the request's own values, which win."""
    merged: dict[str, Any] = {}
    if composite == entry.spec.default_composite:
        merged.update(entry.spec.default_params)
    if entry.bounds is not None:
        merged["low"], merged["high"] = entry.bounds
    merged.update({k: v for k, v in given.items() if v is not None})
    return merged


def resolve_device(setting: str) -> torch.device:
    """`auto`: the first GPU when CUDA is available, else the CPU; `cuda`/`cuda:N` must exist."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"LRP_DEVICE={setting} but that CUDA device is not available; use auto or cpu")
    return device
