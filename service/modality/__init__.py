"""Inputs by kind: request instances (nested lists, tabular feature objects, base64 images) and uploads to
model-space tensors (`instances`), PNG/JPEG decoding within bounded memory (`images`), and text models' tokenizers,
padding and words (`text`), with the load-time probe of a tokenizer by adversarial texts (`tokenizer_probe`).

Imports: service.errors, service.lrp (the engine's Bound), service.manifest.
"""
