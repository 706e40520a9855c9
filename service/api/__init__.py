"""The HTTP layer, the only package importing FastAPI: the app factory, the routes, their dependencies, the
OpenAPI document and Swagger UI. Request and response bodies are the contract's models in service.schemas."""
