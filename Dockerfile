# LRP explanation service: CPU torch by default; for a CUDA build pass a CUDA wheel index, e.g.
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t lrp-service:cuda .
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LRP_HOST=0.0.0.0 \
    LRP_PORT=8000 \
    LRP_MODELS_DIR=/app/models

WORKDIR /app

# torch first, from the chosen wheel index; then the rest of the pinned runtime dependencies.
COPY requirements-torch.txt requirements.txt ./
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" -r requirements-torch.txt \
    && pip install --no-cache-dir -r requirements.txt

COPY service/ service/
COPY models/ models/

RUN useradd --create-home --uid 10001 --user-group lrp
USER 10001:10001

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python", "-m", "service.serving.healthcheck"]

# One uvicorn worker: models live in this process's memory, and requests are batched within it.
CMD ["python", "-m", "service"]
