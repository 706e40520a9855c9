"""Inputs by kind: request instances (nested lists, tabular feature objects, base64 images) and uploads to
model-space tensors (`instances`), PNG/JPEG decoding within bounded memory (`images`), and text models' tokenizers,
padding and words (`text`).

Imports: service.errors, service.lrp (the engine's Bound), service.manifest, service.vetting (file names).
"""
