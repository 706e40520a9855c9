"""One servable model version as the loader made it: everything a request needs of a model, read-only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.faithfulness import Subject
from service.lrp import PreparedModel
from service.manifest.model_json import ModelSpec
from service.modality.instances import Bounds
from service.modality.text import TextModel
from service.serving.config import ServingConfig


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
    def per_token(self) -> bool:
        """Whether the model gives every token its classes (a token classifier), not one answer per input."""
        return self.prepared.graph.per_position

    @property
    def classes(self) -> list[str]:
        """Class labels, indexed by output position."""
        return self.spec.classes

    @property
    def subject(self) -> Subject:
        """The model as its explanations' faithfulness is measured (in passes of its batch size)."""
        return Subject(self.prepared, self.spec.input, self.text, self.serving)

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
