"""The models held in memory: every directory under the models folder, loaded, checked and warmed up.

A model that cannot be loaded is refused with a logged message naming it, its file and the problem;
the other models still load.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from service.errors import ModelFileError, ModelNotFoundError
from service.inputs import Bounds, model_space_bounds
from service.lrp import LRPError, PreparedModel
from service.serving.config import ServingConfig
from service.settings import Settings
from service.store import evaluation, files
from service.store.format import MODEL_FILE, load_model, probe_inputs
from service.store.spec import ModelSpec
from service.text import TextModel

log = logging.getLogger("service.registry")


@dataclass(frozen=True, eq=False)
class ModelEntry:
    """One servable model: its spec, the prepared graph on the serving device, its zbox bounds, the serving
    limits in force for it, the sha256 of its files, when it was loaded and, for a text model, its tokenizer.
    Compared and hashed by identity: a model replaced under the same name is another entry."""

    name: str
    spec: ModelSpec
    prepared: PreparedModel
    bounds: Bounds | None
    serving: ServingConfig
    version: str = ""
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    text: TextModel | None = None
    faithfulness: dict[str, dict[str, float]] | None = None  # measured at load on model.json's evaluation examples

    @property
    def classes(self) -> list[str]:
        """Class labels, indexed by output position."""
        return self.spec.classes

    def default_params(self, composite: str | dict[str, Any]) -> dict[str, Any]:
        """The LRP parameters a request starts from: the model's own defaults when `composite` is its default
        composite, then the input's bounds as zbox low/high."""
        merged: dict[str, Any] = dict(self.spec.default_params) if composite == self.spec.default_composite else {}
        if self.bounds is not None:
            merged["low"], merged["high"] = self.bounds
        return merged

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
    def from_directory(cls, directory: Path, device: torch.device, settings: Settings) -> Registry:
        """Load every `<directory>/<name>/model.json`; failures are logged and recorded, never raised."""
        registry = cls()
        files.discard_staging(directory)
        if not directory.is_dir():
            log.error("models directory %s does not exist (set LRP_MODELS_DIR); serving no models", directory)
            return registry
        for path in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            if not (path / MODEL_FILE).is_file():
                continue
            try:
                entry = load_entry(path, device, settings)
            except ModelFileError as problem:
                registry.failures[path.name] = str(problem)
                log.error("refused model: %s", problem)
                continue
            registry.models[entry.name] = entry
            log.info("loaded model '%s' (%s input %s, %d classes) on %s", entry.name, entry.spec.input.kind,
                     entry.spec.input.shape, len(entry.classes), device)
        return registry


def serving_config(settings: Settings, spec: ModelSpec) -> ServingConfig:
    """The limits a model is served with: its model.json `batching` values over the service settings."""
    own = spec.batching
    return ServingConfig.resolve(settings) if own is None else ServingConfig.resolve(
        settings, own.max_batch_size, own.max_delay_ms, own.timeout_s, own.cpu_threads, own.max_batch_tokens)


def load_entry(path: Path, device: torch.device, settings: Settings, name: str | None = None) -> ModelEntry:
    """Load one model directory as model `name` (default: the folder's name), move it to `device`, resolve its
    serving limits, check its defaults and warm it up with one explain."""
    loaded = load_model(path, name)
    serving = serving_config(settings, loaded.spec)
    entry = ModelEntry(loaded.name, loaded.spec, loaded.prepared.to(device), model_space_bounds(loaded.spec.input),
                       serving, loaded.version, text=loaded.text)
    composite = entry.spec.default_composite
    try:
        method = entry.prepared.resolve(composite, **entry.default_params(composite))
        x, extra = probe_inputs(loaded.spec.input, loaded.text)
        entry.prepared.explain_resolved(x, None, method, extra=extra)
    except LRPError as problem:
        raise ModelFileError(f"model '{loaded.name}': {MODEL_FILE}: default_composite/default_params: "
                             f"{problem}") from None
    measured = evaluation.measure(entry.name, entry.spec, entry.prepared, entry.text, method, entry.serving,
                                  settings.max_evaluation_copies)
    return dataclasses.replace(entry, faithfulness=measured)
