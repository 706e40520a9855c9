"""The running service: what it holds (`state`: settings, the registry once loaded, the device thread, one
micro-batcher per model version and how many requests use each) and how models are added, replaced and removed
while it runs (`changes`).

Imports: service.errors, service.settings, service.serving, service.store (the models folder), service.loader.
"""
