"""The HTTP layer, the only package importing FastAPI: the app factory (`app`), the route classes the routers are
composed of (`routing`: body limits, media types), the REST protocol (`rest`: its routes, its codec, its drawings),
the Open Inference Protocol (`v2`), the catalogue and health (`health`), model management (`admin`), the contract's
bodies (`schemas`), the OpenAPI document and Swagger UI, and the request metrics.

Imports: every package below it (service.inference, service.runtime, service.loader, service.modality, ...).
"""
