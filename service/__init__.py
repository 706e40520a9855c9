"""LRP explanation service: a REST microservice around the graph-based LRP engine in `service.lrp`."""

__version__ = "0.1.0"
