"""The model.json vocabulary: what a model folder's model.json may say (graph nodes checked against the engine's op
table, the input spec of each kind, classes, defaults, batching, evaluation examples), as pydantic models. The
layers above read models, decode inputs and show models in these terms.

Imports: service.lrp (the op table's checks).
"""
