# One image for the four services; compose picks the service with `command`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 CHORUS_HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY launcher ./launcher
RUN pip install --no-cache-dir . && useradd --system --no-create-home chorus
USER chorus
CMD ["python", "-m", "services.search"]
