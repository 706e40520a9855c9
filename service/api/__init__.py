"""The HTTP layer: routes and their request/response schemas (the only package importing FastAPI)."""
