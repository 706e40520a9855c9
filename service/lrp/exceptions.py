"""Errors raised by the LRP engine; each message says what was wrong and how to fix it."""

from service.lrp.ops import SUPPORTED


class LRPError(Exception):
    """Base class of every error the engine raises on purpose."""


class ModelPreparationError(LRPError):
    """The model cannot be turned into an LRP graph (tracing failed, several inputs, bad outputs...)."""


class UnsupportedLayerError(ModelPreparationError):
    """A node of the model has no LRP rule; raised when the model is prepared, never mid-explanation."""

    def __init__(self, nodes: list[tuple[str, str]]) -> None:
        self.nodes = nodes
        listed = "; ".join(f"node '{name}' ({what})" for name, what in nodes)
        super().__init__(f"unsupported layer(s) for LRP: {listed}. Supported: {SUPPORTED}.")


class ExplanationInputError(LRPError, ValueError):
    """An explain call got bad arguments: shape, target, composite or parameter."""
