"""The loader: a model folder becomes a servable `ModelEntry` (read and checked, on its device, warmed up, measured
on its held-out examples, with its serving limits), a models folder a `Registry`, the models held by name.

Imports: service.errors, service.settings, service.lrp, service.serving (the serving limits), service.manifest,
service.modality, service.faithfulness, service.store, service.vetting (file names).
"""

from service.loader.entry import ModelEntry
from service.loader.load import load_directory, load_entry, serving_config
from service.loader.registry import Registry

__all__ = ["ModelEntry", "Registry", "load_directory", "load_entry", "serving_config"]
