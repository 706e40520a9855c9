"""Persistence: a model folder on disk (`format`: model.json + weights.safetensors + tokenizer.json, read and checked
into a prepared graph, and written), its files committed and removed atomically with their version (`files`), and
the converters that write one from a user's nn.Module (`from_module`) or a Hugging Face model (`from_hugging_face`).

Imports: service.errors, service.lrp, service.manifest, service.modality (tokenizers), service.vetting.
"""
