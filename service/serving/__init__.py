"""Serving: the micro-batcher, the device thread and CPU threads, metrics, the server with its draining shutdown,
and the state of a running service. Knows nothing of HTTP; of the engine only its float32 precision switch."""
