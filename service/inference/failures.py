"""The errors of a sample that fails alone in a batched pass: logits that overflow (the client's input is far out
of scale: 422), relevance that is not finite (the client's parameters: 422; the model's defaults: 500, logged)."""

from __future__ import annotations

import dataclasses
import logging

from service.errors import InvalidInputError, NumericalError
from service.inference.job import Sample
from service.loader import ModelEntry
from service.lrp import Method

log = logging.getLogger("service")


def not_finite(entry: ModelEntry, sample: Sample, method: Method) -> InvalidInputError | NumericalError:
    """The error of a sample whose relevance is not finite: the client's (422, naming them) when it chose parameters
    other than the model's defaults for the composite, else the server's (500, logged)."""
    name = method.composite.name
    own = entry.spec.default_composite  # a name or a rule map: the model's defaults hold for it alone
    model_default = entry.prepared.resolve(own, **entry.default_params(own))
    defaults = (model_default.params if method.composite == model_default.composite
                else entry.prepared.resolve(method.composite, **entry.default_params(name)).params)
    chosen = {f.name: getattr(method.params, f.name) for f in dataclasses.fields(method.params)
              if getattr(method.params, f.name) != getattr(defaults, f.name)}
    if chosen:
        said = ", ".join(f"{key}={value!r} (the model's default: {getattr(defaults, key)!r})"
                         for key, value in chosen.items())
        return InvalidInputError(f"inputs[{sample.position}]: its relevance is not finite under composite {name} with "
                                 f"{said}; choose values closer to the defaults")
    log.error("model '%s': non-finite relevance under composite %s with its default parameters", entry.name, name)
    return NumericalError(f"inputs[{sample.position}]: its relevance is not finite under composite {name}; try a "
                          "larger epsilon or stabilizer")


def overflow(entry: ModelEntry, sample: Sample) -> InvalidInputError:
    """The error of an input whose logits are not finite: with finite, checked weights only an input far out of
    the model's scale does that."""
    return InvalidInputError(f"inputs[{sample.position}]: model '{entry.name}' overflows float32 on it (its logits "
                             "are not finite); its values are far outside the scale the model expects "
                             f"(GET /models/{entry.name} describes its input)")
