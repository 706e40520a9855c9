"""Serving machinery that knows no model and no HTTP: the generic micro-batcher, a model's serving limits (`config`),
the device thread and CPU threads, Prometheus metrics, the uvicorn server with its draining shutdown, the heap
freeze and the container health check.

Imports: service.settings, service.lrp (its float32 precision switch only).
"""
