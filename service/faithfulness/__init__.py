"""Faithfulness of explanations by region perturbation: the scheme (`scheme`: features, orders, perturbed copies,
curves, AOPC), the `Subject` that measures a prepared model's explanations in passes of its batch size with the
`Evaluation` a request or model.json asks for and its limit (`subject`), and a model's held-out examples measured at
load and compared to choose its default composite (`examples`).

Imports: service.errors, service.lrp, service.serving (the pass size), service.manifest, service.modality.
"""

from service.faithfulness.scheme import Curves
from service.faithfulness.subject import Evaluation, Measurement, Subject

__all__ = ["Curves", "Evaluation", "Measurement", "Subject"]
