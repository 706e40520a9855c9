"""Loading: a model folder becomes a servable ModelEntry (read and checked by service.store, moved to the device,
its serving limits resolved, its defaults checked by one warm-up explain, its faithfulness measured on model.json's
held-out examples), and a models folder becomes a Registry. A model that cannot be loaded is refused with a logged
message naming it, its file and the problem; the other models still load."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from service.errors import ModelFileError, bounded
from service.faithfulness import examples
from service.loader.entry import ModelEntry
from service.loader.registry import Registry
from service.lrp import LRPError
from service.manifest.model_json import ModelSpec
from service.modality.instances import model_space_bounds
from service.serving.config import ServingConfig
from service.settings import Settings
from service.store import files
from service.store.format import load_model, probe_inputs
from service.vetting.checks import MODEL_FILE

log = logging.getLogger("service.registry")


def serving_config(settings: Settings, spec: ModelSpec) -> ServingConfig:
    """The limits a model is served with: its model.json `batching` values over the service settings."""
    own = spec.batching
    return ServingConfig.resolve(settings) if own is None else ServingConfig.resolve(
        settings, own.max_batch_size, own.max_delay_ms, own.timeout_s, own.cpu_threads, own.max_batch_tokens)


def load_entry(path: Path, device: torch.device, settings: Settings, name: str | None = None) -> ModelEntry:
    """Load one model directory as model `name` (default: the folder's name), move it to `device`, resolve its
    serving limits, check its defaults and warm it up with one explain (its logits and relevance must be finite:
    a model that fails there would fail every request), and measure it on its held-out examples."""
    loaded = load_model(path, name, settings.model_limits)
    serving = serving_config(settings, loaded.spec)
    entry = ModelEntry(loaded.name, loaded.spec, loaded.prepared.to(device), model_space_bounds(loaded.spec.input),
                       serving, loaded.version, text=loaded.text)
    composite = entry.spec.default_composite
    try:
        method = entry.prepared.resolve(composite, **entry.default_params(composite))
        x, extra = probe_inputs(loaded.spec.input, loaded.text)
        warm = entry.prepared.explain_resolved(x, None, method, extra=extra)
    except LRPError as problem:
        raise ModelFileError(f"model '{loaded.name}': {MODEL_FILE}: default_composite/default_params: "
                             f"{problem}") from None
    for what, values in (("logits", warm.logits), ("relevance", warm.relevance)):
        if not bool(torch.isfinite(values).all()):
            raise ModelFileError(f"model '{loaded.name}': its {what} are not finite on the warm-up input "
                                 f"({_warm_up_input(loaded.spec)}) under its default composite "
                                 f"{method.composite.name}: every request would fail; check the weights, or the "
                                 "default composite and its parameters")
    measured = examples.measure(entry.name, entry.spec, entry.subject, method, settings.max_evaluation_copies)
    return dataclasses.replace(entry, faithfulness=measured)


def _warm_up_input(spec: ModelSpec) -> str:
    if spec.input.kind == "text":
        return "texts of pad tokens, one padded"
    return "zeros"


def load_directory(directory: Path, device: torch.device, settings: Settings) -> Registry:
    """Load every `<directory>/<name>/model.json`; failures are logged and recorded, never raised."""
    registry = Registry()
    if not directory.is_dir():
        log.error("models directory %s does not exist (set LRP_MODELS_DIR); serving no models", directory)
        return registry
    for done in files.recover(directory):
        log.warning("models folder %s after a crash: %s", directory, done)
    for path in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        if not (path / MODEL_FILE).is_file():
            continue
        try:
            entry = load_entry(path, device, settings)
        except ModelFileError as problem:
            registry.refuse(path.name, str(problem))
            log.error("refused model: %s", problem)
            continue
        except Exception as problem:  # any failure of one model is that model's: the others load
            reason = bounded(f"model '{path.name}': could not be loaded ({type(problem).__name__}: {problem})")
            registry.refuse(path.name, reason)
            log.exception("refused model '%s'", path.name)
            continue
        registry.put(entry)
        log.info("loaded model '%s' (%s input %s, %d classes) on %s", entry.name, entry.spec.input.kind,
                 entry.spec.input.shape, len(entry.classes), device)
    return registry
