"""The models held in memory, by name, and the models refused at load with the reason. Only its methods change it:
a model is added or replaced whole (`put`) and removed whole (`remove`)."""

from __future__ import annotations

from collections.abc import Mapping

from service.errors import ModelNotFoundError
from service.loader.entry import ModelEntry


class Registry:
    """Loaded models by name and refused ones with the reason; a name is either served or refused, never both."""

    def __init__(self) -> None:
        self._models: dict[str, ModelEntry] = {}
        self._failures: dict[str, str] = {}

    @property
    def names(self) -> list[str]:
        """The served models' names, sorted."""
        return sorted(self._models)

    @property
    def failures(self) -> Mapping[str, str]:
        """Refused model names and why (read-only)."""
        return dict(self._failures)

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def get(self, name: str) -> ModelEntry:
        """The model called `name`; raise ModelNotFoundError listing the available names."""
        entry = self._models.get(name)
        if entry is None:
            raise ModelNotFoundError(f"no model named '{name}'; available models are {self.names} "
                                     "(GET /models lists them)")
        return entry

    def entries(self) -> list[ModelEntry]:
        """The served models, by name."""
        return [self._models[name] for name in self.names]

    def serves(self, entry: ModelEntry) -> bool:
        """Whether `entry` is the version its name serves now (not replaced, not removed)."""
        return self._models.get(entry.name) is entry

    def put(self, entry: ModelEntry) -> ModelEntry | None:
        """Serve `entry` under its name (a refusal under that name is forgotten); the entry it replaces, if any."""
        previous = self._models.get(entry.name)
        self._models[entry.name] = entry
        self._failures.pop(entry.name, None)
        return previous

    def refuse(self, name: str, reason: str) -> None:
        """Record that model `name` was refused at load, and why."""
        self._failures[name] = reason

    def remove(self, name: str) -> ModelEntry:
        """Stop serving model `name` (ModelNotFoundError for an unknown one); the entry it served."""
        entry = self.get(name)
        del self._models[name]
        return entry
